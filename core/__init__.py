"""ctxseg: compose, train and ship context-aware semantic segmentation models.

Importing ``ctxseg`` is cheap; torch is imported by the modules that need it. From
Python, a trained model labels images as ``ctxseg predict`` does::

    import ctxseg

    model = ctxseg.load("runs/fcn_resnet18/model.safetensors")  # an Inference, set up once
    labels = model.predict(PIL.Image.open("a.jpg"))              # (H, W) class indices
    metrics, _ = ctxseg.evaluate(model, dataset)                  # a SegmentationDataset

``ctxseg.load(weights, backend="onnxruntime")`` runs it on ONNX Runtime instead, and
``ctxseg.load("model.int8.onnx")`` the int8 model of ``ctxseg export --quantize int8``.
"""

__version__ = "0.1.0"

__all__ = ["Inference", "PLUGIN_API", "evaluate", "load"]

PLUGIN_API = ("ctxseg.nn", "ctxseg.interfaces", "ctxseg.registry", "ctxseg.data", "ctxseg.spec", "ctxseg.errors",
              "ctxseg.testing")
"""The modules a plugin may import, each as the module itself (``ctxseg.data``, not
``ctxseg.data.folder``); the rest of ctxseg is internal. ``tests/test_architecture.py``
holds every plugin to it."""


def load(weights, *, backend=None, passes=None, test=None):
    """The :class:`Inference` of a weights file (or of an ONNX file ``ctxseg export`` wrote), run
    by ``backend`` ("torch", "onnxruntime" or "auto"; default: the ``[test]`` table's), with
    ``passes`` and ``test`` keys as :meth:`Inference.from_weights` takes them."""
    from ctxseg.engine.inference import Inference

    test = {**(test or {}), **({"backend": backend} if backend is not None else {})}
    return Inference.from_weights(weights, passes=passes, test=test)[0]


def __getattr__(name: str):
    """``ctxseg.Inference`` and ``ctxseg.evaluate``, imported (with torch) on first use."""
    if name == "Inference":
        from ctxseg.engine.inference import Inference

        return Inference
    if name == "evaluate":
        from ctxseg.engine.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'ctxseg' has no attribute {name!r}")
