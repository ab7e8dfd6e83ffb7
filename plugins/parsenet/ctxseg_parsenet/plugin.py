"""Hook implementations of the ctxseg-parsenet plugin (published as entry point ``parsenet``).

Only records here, no torch import: ``ctxseg plugins`` lists components without
loading any model code.
"""

from ctxseg.registry import Component, hookimpl


@hookimpl
def ctxseg_components() -> list[Component]:
    return [
        Component(
            "backbone", "parsenet.deeplab_vgg16", "ctxseg_parsenet.vgg:DeepLabVGG16",
            "ParseNet Baseline = DeepLab-LargeFOV VGG-16: output stride 8, fc6 3x3 dilation 12 (1024), fc7 1x1 (1024)",
            example={"fc_channels": 8},
        ),
        Component(
            "context_head", "parsenet.global_context", "ctxseg_parsenet.global_context:GlobalContext",
            "ParseNet global context: concat(L2Norm(x), unpooled L2Norm(global average pool6 of x))",
            example={"normalize": True, "scale": 10.0},
        ),
        Component(
            "fusion", "parsenet.fusion", "ctxseg_parsenet.fusion:ParseNetFusion",
            "ParseNet multi-layer fusion with pool6: L2Norm per input, early (concat) or late (summed scores)",
            example={"mode": "early", "normalize": True, "scale": 10.0, "global_context": True},
        ),
    ]
