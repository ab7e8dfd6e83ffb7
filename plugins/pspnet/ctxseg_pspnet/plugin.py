"""Hook implementations of the ctxseg-pspnet plugin (published as entry point ``pspnet``).

Only records here, no torch import: ``ctxseg plugins`` lists components without
loading any model code. PSPNet's deep supervision (Sec. 4) needs no component of its
own: it is the core's ``[[model.aux]]`` table with ``base.fcn`` on ``c4``, ``weight = 0.4``.
"""

from ctxseg.registry import Component, Converter, hookimpl


@hookimpl
def ctxseg_components() -> list[Component]:
    return [
        Component(
            "context_head", "pspnet.pyramid_pooling", "ctxseg_pspnet.pyramid_pooling:PyramidPooling",
            "PSPNet pyramid pooling module (bins 1/2/3/6, avg/max, 1x1 reduction) and 3x3 conv",
            example={"channels": 8, "bins": [1, 2, 3, 6]},
        ),
        Component(
            "backbone", "pspnet.resnet", "ctxseg_pspnet.resnet:DeepStemResNet",
            "ResNet with PSPNet's deep stem (three 3x3 convs replace the 7x7), output stride 8/16/32",
            example={"depth": 18},
        ),
    ]


@hookimpl
def ctxseg_converters() -> list[Converter]:
    return [
        Converter("mmsegmentation.decode_head", "pspnet.mmsegmentation_psp_head",
                  "ctxseg_pspnet.convert:mmsegmentation_psp_head",
                  "MMSegmentation's PSPHead (psp_modules.0.1.conv.weight)"),
    ]
