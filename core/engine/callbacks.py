"""A training run's callbacks (``[[run.callbacks]]``), called at their hooks, each fault named.

What a callback raises in a hook, but a :class:`~ctxseg.errors.CtxsegError` (which already says
what to fix), and a ``state_dict`` a checkpoint cannot hold, are a
:class:`~ctxseg.errors.ComponentError` naming its spec key and plugin distribution, as its
constructor's faults are (:meth:`ctxseg.spec.Ref.build`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ctxseg.errors import ComponentError, CtxsegError
from ctxseg.files.checkpoint import state_problem
from ctxseg.interfaces import Callback, TrainingRun
from ctxseg.spec import CallbackRef

__all__ = ["Callbacks"]


class Callbacks:
    """The callbacks ``refs`` name (``(spec key, reference)`` pairs), built for ``run``, in order."""

    def __init__(self, refs: Sequence[tuple[str, CallbackRef]], run: TrainingRun, source: str = "<spec>"):
        self.source = source
        self.entries: list[tuple[str, CallbackRef, Callback]] = [
            (key, ref, ref.build(run, key=key, source=source)) for key, ref in refs]

    def __bool__(self) -> bool:
        return bool(self.entries)

    def call(self, hook: str, *args: Any) -> None:
        """Call ``hook`` (``"on_step_end"``, ...) of every callback with ``args``."""
        for key, ref, callback in self.entries:
            self._guarded(key, ref, hook, getattr(callback, hook), *args)

    def state_dicts(self) -> dict[str, dict[str, Any]]:
        """Every callback's ``state_dict``, by its spec key, for the checkpoint."""
        states = {}
        for key, ref, callback in self.entries:
            state = self._guarded(key, ref, "state_dict", callback.state_dict)
            if (problem := state_problem(state)) is not None:
                raise ComponentError(f"{self.source}: {ref.describe(key)}: its state_dict cannot be stored in a "
                                     f"checkpoint: {problem}")
            states[key] = state
        return states

    def load_state_dicts(self, states: Mapping[str, dict[str, Any]]) -> None:
        """Hand each callback its state from a checkpoint (``state_dicts``' form)."""
        for key, ref, callback in self.entries:
            if key in states:
                self._guarded(key, ref, "load_state_dict", callback.load_state_dict, dict(states[key]))

    def _guarded(self, key: str, ref: CallbackRef, hook: str, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except CtxsegError:
            raise
        except Exception as error:  # noqa: BLE001 - whatever a callback raises is its own
            raise ComponentError(f"{self.source}: {ref.describe(key)}: {hook} raised "
                                 f"{type(error).__name__}: {error}") from error
