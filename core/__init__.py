"""ctxseg: compose, train and ship context-aware semantic segmentation models.

Importing ``ctxseg`` is cheap; torch is imported by the modules that need it.
"""

__version__ = "0.1.0"
