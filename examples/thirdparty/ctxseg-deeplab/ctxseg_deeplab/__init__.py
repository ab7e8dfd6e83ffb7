"""ctxseg-deeplab: DeepLab-v2's atrous spatial pyramid pooling as a ctxseg context head.

An example of an out-of-tree ctxseg plugin; see README.md. Importing the package is
cheap: the head (and torch) load only when a model uses it.
"""

__version__ = "0.1.0"
