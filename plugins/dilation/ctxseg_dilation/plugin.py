"""Hook implementations of the ctxseg-dilation plugin (published as entry point ``dilation``).

Only records here, no torch import: ``ctxseg plugins`` lists components without
loading any model code. The front end's last layer, the 1x1 convolution to the C class
scores that the context module reads, is the core's ``base.scores`` head.
"""

from ctxseg.registry import Component, hookimpl


@hookimpl
def ctxseg_components() -> list[Component]:
    return [
        Component(
            "context_head", "dilation.context_module", "ctxseg_dilation.context_module:ContextModule",
            "Yu & Koltun context module: 3x3 convs dilated 1,1,2,4,8,16,1 + 1x1, C -> C maps, identity init",
            example={"variant": "basic"},
        ),
        Component(
            "backbone", "dilation.frontend", "ctxseg_dilation.frontend:FrontEnd",
            "Yu & Koltun front end: VGG-16 without pool4/5, fc6 7x7 dilated 4, unpadded, image reflection-padded",
            # The paper's unpadded layers need a 186-pixel buffer around even an 8-pixel image
            # (a 380-pixel VGG-16 pass): the contract test takes VGG's own padding instead.
            example={"fc_channels": 64, "intermediate_padding": True},
        ),
    ]
