"""Torch's intra-op thread count, lowered for work made of tiny ops."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["one_thread"]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread within the block: for loops of tiny ops (scene rendering, contract
    checks, the build-time dry forward), where on a busy machine idle worker threads spinning
    for a core make the work several times slower (scene generation 7 s -> 1.5 s, a
    ResNet-152 dry forward 5.6 s -> 0.2 s on two shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
