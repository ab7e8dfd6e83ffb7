"""The model: assembly from a spec (:mod:`.assemble`), rebuilding from weights (:mod:`.load`),
and what ``ctxseg inspect`` measures of it (:mod:`.summary`)."""

from ctxseg.model.assemble import SegmentationModel, submodule
from ctxseg.model.blocks import upsample

__all__ = ["SegmentationModel", "submodule", "upsample"]
