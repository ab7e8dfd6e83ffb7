"""ctxseg-dilation: Yu and Koltun's dilated-convolution context network (ICLR 2016) as ctxseg plugins.

Importing the package is cheap: the components (and torch) load only when a model
uses them. See README.md and ``plugin.py`` for what it registers.
"""

__version__ = "0.1.0"
