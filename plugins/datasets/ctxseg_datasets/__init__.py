"""The papers' benchmarks for ctxseg, read as distributed (no conversion scripts).

PASCAL VOC 2012 with SBD's extra annotations, PASCAL-Context (59 classes + background),
SiftFlow, ADE20K (SceneParsing) and Cityscapes; each dataset module holds its class
names, palette and label mapping, and the benchmark's own prediction format where
ctxseg can write it (``ctxseg predict --format voc|cityscapes``).
"""

__version__ = "0.1.0"
