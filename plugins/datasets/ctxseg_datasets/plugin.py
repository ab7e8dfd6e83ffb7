"""Hook implementations of the ctxseg-datasets plugin (published as entry point ``datasets``).

Only records here, no torch import: ``ctxseg plugins`` lists them without loading any
dataset code. They have no ``example`` table: they read data from disk, so each class's
``write_example`` writes a tiny dataset in its official layout (with
:mod:`ctxseg_datasets.fixtures`), which ``ctxseg.testing`` checks them on.
"""

from ctxseg.registry import Component, hookimpl


@hookimpl
def ctxseg_components() -> list[Component]:
    return [
        Component("dataset", "datasets.voc2012", "ctxseg_datasets.voc:VOC2012",
                  "PASCAL VOC 2012 (VOCdevkit layout) + SBD .mat annotations, train_aug = 10,582 images"),
        Component("dataset", "datasets.pascal_context", "ctxseg_datasets.pascal_context:PascalContext",
                  "PASCAL-Context full-label .mat annotations mapped to 59 classes + background"),
        Component("dataset", "datasets.siftflow", "ctxseg_datasets.siftflow:SiftFlow",
                  "SiftFlow, 33 classes, standard 2,488 / 200 split"),
        Component("dataset", "datasets.ade20k", "ctxseg_datasets.ade20k:ADE20K",
                  "ADE20K SceneParsing (ADEChallengeData2016), 150 classes, 0 ignored"),
        Component("dataset", "datasets.cityscapes", "ctxseg_datasets.cityscapes:Cityscapes",
                  "Cityscapes leftImg8bit + gtFine labelIds -> 19 trainIds"),
    ]
