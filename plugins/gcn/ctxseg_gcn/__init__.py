"""ctxseg-gcn: the Global Convolutional Network (Peng, Zhang, Yu, Luo and Sun, "Large Kernel
Matters — Improve Semantic Segmentation by Global Convolutional Network", CVPR 2017) as ctxseg plugins.

Importing the package is cheap: the components (and torch) load only when a model
uses them. See README.md and ``plugin.py`` for what it registers.
"""

__version__ = "0.1.0"
