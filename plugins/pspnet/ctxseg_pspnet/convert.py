"""MMSegmentation's ``PSPHead`` as ``pspnet.pyramid_pooling``: the key map ``ctxseg convert`` reads its PSPNets with.

MMSeg's head is the pyramid (``psp_modules.N``: pooling, then a 1x1 ConvModule) and the 3x3
``bottleneck``; its ``conv_seg`` is ctxseg's classifier, mapped by ctxseg. What the keys cannot
tell is MMSeg's configs' default: bins 1, 2, 3, 6, bilinear upsampling without aligned corners.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from ctxseg.errors import WeightsError
from ctxseg.registry import Conversion


def mmsegmentation_psp_head(state: Mapping[str, Tensor]) -> Conversion | None:
    """The head from the tensors under MMSeg's ``decode_head.``; None for another head."""
    if "psp_modules.0.1.conv.weight" not in state:
        return None
    bins = sum(1 for k in state if re.fullmatch(r"psp_modules\.\d+\.1\.conv\.weight", k))
    if bins != 4:
        raise WeightsError(f"a PSPNet with {bins} pyramid levels: their bins are not in the checkpoint "
                           "(MMSegmentation's default is 4 levels, 1, 2, 3, 6); pass --spec with them")
    table = {"name": "pspnet.pyramid_pooling", "bins": [1, 2, 3, 6], "channels": state["conv_seg.weight"].shape[1],
             "align_corners": False}
    return Conversion("pspnet", table, [(r"^psp_modules\.(\d+)\.1\.conv\.", r"levels.\1.reduce.0."),
                                        (r"^psp_modules\.(\d+)\.1\.bn\.", r"levels.\1.reduce.1."),
                                        (r"^bottleneck\.conv\.", "conv.0."), (r"^bottleneck\.bn\.", "conv.1.")])
