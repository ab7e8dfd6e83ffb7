"""ctxseg-fcrn: the fully convolutional residual network (Wu, Shen and van den Hengel, "High-performance
Semantic Segmentation Using Very Deep Fully Convolutional Networks", 2016) as ctxseg plugins.

Importing the package is cheap: the components (and torch) load only when a model
uses them. See README.md and ``plugin.py`` for what it registers.
"""

__version__ = "0.1.0"
