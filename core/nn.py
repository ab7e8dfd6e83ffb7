"""The building blocks a plugin may use, in one place: ctxseg's public API for component authors.

Everything a paper plugin extends or reuses is here, and plugins import nothing else
from ctxseg's internals (``tests/test_architecture.py`` enforces it); beside this module, a
plugin may use :mod:`ctxseg.interfaces` (what to implement), :mod:`ctxseg.registry`
(how to register), :mod:`ctxseg.data` (dataset building blocks), :mod:`ctxseg.spec`
(the spec's types), :mod:`ctxseg.errors` and :mod:`ctxseg.testing`.

- Backbones to extend: :class:`ResNet` (torchvision's layout, output stride 8/16/32 by
  dilation) and its blocks :class:`BasicBlock` and :class:`Bottleneck`, :class:`VGG16`
  and :func:`fc_as_convolutions` (VGG's fc6/fc7 as convs).
- :func:`load_pretrained`: an ImageNet checkpoint (``.pth``, read without pickle, or
  ``.safetensors``) into a backbone, every mismatching tensor named.
- :func:`upsample`, :func:`he_init`; :func:`odd_kernel` and :func:`channel_count`, attrs
  validators that also refuse implausible sizes (:data:`MAX_KERNEL`, :data:`MAX_CHANNELS`)
  before anything is built.
- :func:`submodule`: a module of the assembled model by the path its weights carry.
"""

from ctxseg.builtin.pretrained import load_pretrained
from ctxseg.builtin.resnet import BasicBlock, Bottleneck, ResNet
from ctxseg.builtin.vgg import VGG16, fc_as_convolutions
from ctxseg.model.assemble import submodule
from ctxseg.model.blocks import MAX_CHANNELS, MAX_KERNEL, channel_count, he_init, odd_kernel, upsample

__all__ = ["MAX_CHANNELS", "MAX_KERNEL", "BasicBlock", "Bottleneck", "ResNet", "VGG16", "channel_count", "fc_as_convolutions", "he_init",
           "load_pretrained", "odd_kernel", "submodule", "upsample"]
