"""Hook implementations of the built-in plugin: the baseline components and their checkpoints' converters."""

from ctxseg.registry import Component, Converter, hookimpl


@hookimpl
def ctxseg_components() -> list[Component]:
    return [
        Component("backbone", "base.resnet", "ctxseg.builtin.resnet:ResNet",
                  "ResNet-18/34/50/101/152 in torchvision's layout, output stride 8/16/32 by dilation",
                  example={"depth": 18}),
        Component("backbone", "base.vgg16", "ctxseg.builtin.vgg:VGG16",
                  "VGG-16 conv layers in torchvision's layout, output stride 8/16/32 by dilation"),
        Component("context_head", "base.fcn", "ctxseg.builtin.fcn:FCNHead",
                  "FCN baseline head: 3x3 conv, BN, ReLU, dropout (no context)",
                  example={"channels": 8}),
        Component("context_head", "base.aspp", "ctxseg.builtin.aspp:ASPP",
                  "DeepLabv3 atrous spatial pyramid pooling (1x1, atrous 3x3 and image-pooling branches, BN)",
                  example={"channels": 8, "rates": [1, 2]}),
        Component("context_head", "base.scores", "ctxseg.builtin.scores:Scores",
                  "1x1 conv to class scores, for heads that work on scores (context module)"),
        Component("loss", "base.cross_entropy", "ctxseg.builtin.losses:CrossEntropy",
                  "pixel-wise cross-entropy with ignore index"),
        Component("loss", "base.dice", "ctxseg.builtin.losses:Dice",
                  "soft multi-class Dice loss, averaged over the classes present"),
        Component("loss", "base.lovasz_softmax", "ctxseg.builtin.losses:LovaszSoftmax",
                  "Lovasz-softmax: the Lovasz extension of the Jaccard loss (Berman et al. 2018)"),
        Component("loss", "base.focal", "ctxseg.builtin.losses:Focal",
                  "sigmoid focal loss per class, gamma and alpha (Lin et al. 2017)"),
        Component("loss", "base.sum", "ctxseg.builtin.losses:Sum",
                  "weighted sum of losses (parts = [{ name = ..., weight = ... }])",
                  example={"parts": [{"name": "base.cross_entropy"}, {"name": "base.dice", "weight": 0.5}]}),
        Component("schedule", "base.poly", "ctxseg.builtin.schedules:Poly",
                  "poly learning-rate decay (1 - step/total)^power, with linear warm-up"),
        Component("schedule", "base.cosine", "ctxseg.builtin.schedules:Cosine",
                  "cosine annealing to min_factor at the last step, with linear warm-up"),
        Component("schedule", "base.step", "ctxseg.builtin.schedules:Step",
                  "learning rate times gamma every step_size steps, with linear warm-up",
                  example={"step_size": 30}),
        Component("schedule", "base.multistep", "ctxseg.builtin.schedules:MultiStep",
                  "learning rate times gamma at each milestone step, with linear warm-up",
                  example={"milestones": [50, 100], "warmup_steps": 10}),
        Component("optimizer", "base.sgd", "ctxseg.builtin.optimizers:SGD",
                  "SGD with momentum and weight decay"),
        Component("optimizer", "base.adam", "ctxseg.builtin.optimizers:Adam",
                  "Adam, weight decay as an L2 term"),
        Component("optimizer", "base.adamw", "ctxseg.builtin.optimizers:AdamW",
                  "AdamW: Adam with decoupled weight decay"),
        Component("passes", "base.single", "ctxseg.builtin.passes:SinglePass",
                  "one forward pass per batch, in training and at inference", example={}),
        Component("dataset", "base.folder", "ctxseg.data.folder:FolderDataset",
                  "images/ + masks/ (PNG) + classes.json, split by folders"),
        Component("dataset", "base.context_scenes", "ctxseg.data.context_scenes:ContextScenes",
                  "procedural scenes where context decides the class (generated on first use)",
                  example={"train_size": 8, "val_size": 4, "image_size": 64}),
        Component("callback", "base.tensorboard", "ctxseg.builtin.tensorboard:TensorBoard",
                  "TensorBoard event files in the run directory: loss, learning rate, validation metrics, panels"),
    ]


@hookimpl
def ctxseg_converters() -> list[Converter]:
    return [
        Converter("checkpoint", "base.torchvision", "ctxseg.builtin.convert:torchvision",
                  "torchvision's fcn/deeplabv3 keys (backbone.conv1.weight, classifier.0.weight)"),
        Converter("checkpoint", "base.mmsegmentation", "ctxseg.builtin.convert:mmsegmentation",
                  "MMSegmentation's (backbone.stem.0.weight, decode_head.conv_seg.weight)"),
        Converter("mmsegmentation.decode_head", "base.mmsegmentation_fcn_head",
                  "ctxseg.builtin.convert:mmsegmentation_fcn_head", "MMSegmentation's FCNHead (convs.0.conv.weight)"),
    ]
