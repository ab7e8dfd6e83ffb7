"""ctxseg: compose, train and ship context-aware semantic segmentation models.

Importing ``ctxseg`` is cheap; torch is imported by the modules that need it. From
Python, a trained model labels images as ``ctxseg predict`` does::

    import ctxseg

    model = ctxseg.load("runs/fcn_resnet18/model.safetensors")  # an Inference, set up once
    labels = model.predict(PIL.Image.open("a.jpg"))              # (H, W) class indices
    metrics, _ = ctxseg.evaluate(model, dataset)                  # a SegmentationDataset
"""

__version__ = "0.1.0"

__all__ = ["Inference", "evaluate", "load"]


def load(weights, **options):
    """The :class:`Inference` of a weights file; ``options`` as
    :meth:`Inference.from_weights` takes them (``passes``, ``test``)."""
    from ctxseg.engine.inference import Inference

    return Inference.from_weights(weights, **options)[0]


def __getattr__(name: str):
    """``ctxseg.Inference`` and ``ctxseg.evaluate``, imported (with torch) on first use."""
    if name == "Inference":
        from ctxseg.engine.inference import Inference

        return Inference
    if name == "evaluate":
        from ctxseg.engine.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'ctxseg' has no attribute {name!r}")
