"""TensorBoard event files of a training run: the built-in callback ``base.tensorboard``
(a ``[[run.callbacks]]`` table, or ``[run] tensorboard = true``).

Written with ``torch.utils.tensorboard`` into the run directory itself, so that
``tensorboard --logdir runs`` lists every run by its folder's name: per step the
training loss and learning rate; per evaluation every validation number (mean and
per-class IoU, the spec's metrics) and image | ground truth | prediction panels. An
event file is a log appended as training goes (TensorBoard reads it while it grows),
so it is the one file of a run that is not written atomically. A resumed run starts a
new one, which purges the events after its checkpoint's step (of the updates it makes
again): the curves read as those of a run never stopped.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
from torch import Tensor

from ctxseg.errors import MissingExtraError
from ctxseg.files.pictures import panel
from ctxseg.interfaces import Callback, TrainingRun

__all__ = ["TensorBoard"]


class TensorBoard(Callback):
    """Logs a training run into its run directory; its state is the last step it logged."""

    @attrs.define(frozen=True, kw_only=True)
    class Config:
        pass

    def __init__(self, config: Config, run: TrainingRun):
        super().__init__(config, run)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise MissingExtraError("base.tensorboard: writing TensorBoard logs needs the tensorboard package; "
                              "install it with: python -m pip install 'ctxseg[tensorboard]'") from None
        self.run, self.step = run, 0
        self._make_writer = SummaryWriter
        self._writer = None
        self._purge: int | None = None

    @property
    def writer(self):
        """The event file, opened on the first event: after a resume, it purges the steps after the checkpoint's."""
        if self._writer is None:
            self._writer = self._make_writer(str(self.run.out), purge_step=self._purge)
        return self._writer

    def on_step_end(self, step: int, loss: float, lr: float) -> None:
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        self.step = step

    def on_evaluation(self, step: int, metrics: Mapping[str, Any],
                      examples: Sequence[tuple[int, Tensor, Tensor, Tensor]]) -> None:
        """Every number of ``metrics`` (nested tables as ``val/<table>/<key>``) and a panel per example."""
        for tag, value in _numbers("val", metrics):
            self.writer.add_scalar(tag, value, step)
        for index, image, mask, prediction in examples:
            picture = np.asarray(panel(image, mask, prediction, self.run.palette))
            self.writer.add_image(f"predictions/{self.run.val_names[index]}", picture, step, dataformats="HWC")
        self.writer.flush()

    def on_train_end(self, metrics: Mapping[str, Any]) -> None:
        if self._writer is not None:
            self._writer.close()

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = state["step"]
        self._purge = self.step + 1


def _numbers(prefix: str, table: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    for key, value in table.items():
        if isinstance(value, Mapping):
            yield from _numbers(f"{prefix}/{key}", value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}/{key}", float(value)
