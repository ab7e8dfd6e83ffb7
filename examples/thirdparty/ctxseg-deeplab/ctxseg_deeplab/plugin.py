"""Hook implementations of the ctxseg-deeplab plugin (published as entry point ``deeplab``).

Only records here, no torch import: ``ctxseg plugins`` lists components without
loading any model code.
"""

from ctxseg.registry import Component, hookimpl


@hookimpl
def ctxseg_components() -> list[Component]:
    return [
        Component(
            "context_head", "deeplab.aspp", "ctxseg_deeplab.aspp:ASPP",
            "DeepLab-v2 atrous spatial pyramid pooling: parallel 3x3 atrous convs (rates 6/12/18/24), summed",
            example={"channels": 8, "rates": [1, 2]},
        ),
    ]
