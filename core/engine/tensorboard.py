"""TensorBoard event files of a training run (``[run] tensorboard = true``).

Written with ``torch.utils.tensorboard`` into the run directory itself, so that
``tensorboard --logdir runs`` lists every run by its folder's name: per step the
training loss and learning rate; per evaluation every validation number (mean and
per-class IoU, the spec's metrics) and image | ground truth | prediction panels. An
event file is a log appended as training goes (TensorBoard reads it while it grows),
so it is the one file of a run that is not written atomically; a resumed run starts a
new one and TensorBoard drops the old one's events after the resumed step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from ctxseg.errors import CtxsegError
from ctxseg.files.pictures import panel

__all__ = ["TensorBoard"]


class TensorBoard:
    """Logs a training run into ``out``; with ``out=None`` it logs nothing (one object to call
    either way, so the training loop needs no condition: pass None to turn it off, e.g. off
    rank 0 of a distributed run)."""

    def __init__(self, out: Path | None, names: Sequence[str], palette: Sequence[tuple[int, int, int]], *,
                 start: int = 0):
        self.names, self.palette = list(names), list(palette)
        self.writer = None
        if out is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise CtxsegError("run.tensorboard: writing TensorBoard logs needs the tensorboard package; "
                                  "install it with: python -m pip install 'ctxseg[tensorboard]'") from None
            self.writer = SummaryWriter(str(out), purge_step=start or None)

    def train(self, step: int, loss: float, lr: float) -> None:
        """One optimizer update's loss and learning rate (of the first parameter group)."""
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    def evaluation(self, step: int, metrics: Mapping[str, Any],
                   examples: Sequence[tuple[int, Tensor, Tensor, Tensor]] = ()) -> None:
        """Every number of an evaluation's ``metrics`` (nested tables as ``val/<table>/<key>``)
        and a panel per example ``(index, image, mask, prediction)``."""
        if self.writer is None:
            return
        for tag, value in _numbers("val", metrics):
            self.writer.add_scalar(tag, value, step)
        for index, image, mask, prediction in examples:
            picture = np.asarray(panel(image, mask, prediction, self.palette))
            self.writer.add_image(f"predictions/{self.names[index]}", picture, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _numbers(prefix: str, table: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    for key, value in table.items():
        if isinstance(value, Mapping):
            yield from _numbers(f"{prefix}/{key}", value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}/{key}", float(value)
