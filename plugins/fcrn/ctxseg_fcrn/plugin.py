"""Hook implementations of the ctxseg-fcrn plugin (published as entry point ``fcrn``).

Only records here, no torch import. The rest of FCRN is general machinery of the
core, set from TOML: the ResNet is ``base.resnet``; frozen batch-norm statistics are
``model.batch_norm``, dropout in the top-most blocks ``model.dropout`` and several crops
per update ``run.accumulate``. The simulated high-resolution network is this plugin's
way to run a model, ``[run.passes] name = "fcrn.simulated"``.
"""

from ctxseg.registry import Component, hookimpl


@hookimpl
def ctxseg_components() -> list[Component]:
    return [
        Component(
            "context_head", "fcrn.classifier", "ctxseg_fcrn.classifier:DilatedClassifier",
            "one k x k convolution of dilation d straight to class scores; field of view ((k-1)d+1) x stride",
            example={"kernel": 3, "dilation": 2},
        ),
        Component(
            "loss", "fcrn.bootstrapping", "ctxseg_fcrn.bootstrapping:OnlineBootstrapping",
            "cross-entropy over the hard pixels only: the top K per crop, or those below probability t (Eq. 1)",
            example={"top_k": 16},
        ),
        Component(
            "passes", "fcrn.simulated", "ctxseg_fcrn.simulate:SimulatedPasses",
            "the finer network (output stride / 2) simulated by four passes shifted before a down-sampling layer",
            example={"layer": "backbone.layer2"},
        ),
    ]
