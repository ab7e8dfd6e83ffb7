"""Datasets: the folder format, the generated context scenes, the training pipeline, and the
building blocks a dataset plugin uses (public API, beside :mod:`ctxseg.interfaces`).

- :class:`FileDataset`: a dataset of image and label files, checked as it reads them.
- :func:`read_image`, :func:`read_index_png`, :func:`map_labels`: reading samples with
  errors that name the file.
- :func:`colorize`: a label map as a palette PNG (for prediction formats); :func:`voc_palette`:
  PASCAL VOC's class colours, which most benchmarks reuse.
"""

from ctxseg.data.samples import FileDataset, map_labels, read_image, read_index_png
from ctxseg.files.pictures import colorize, voc_palette

__all__ = ["FileDataset", "colorize", "map_labels", "read_image", "read_index_png", "voc_palette"]
