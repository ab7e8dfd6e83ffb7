"""Errors caused by user input: the CLI prints their message, never a traceback."""

from __future__ import annotations

__all__ = ["ComponentError", "CtxsegError", "DataError", "MissingExtraError", "PluginError", "SpecError", "WeightsError",
           "WriteError"]


class CtxsegError(Exception):
    """Base of every error a user can fix (bad spec, weights, data or plugin)."""


class SpecError(CtxsegError):
    """A TOML spec is invalid; the message names the file, the key path and what was expected."""


class PluginError(CtxsegError):
    """A plugin failed to load or conflicts with another; the message names the distribution."""


class ComponentError(PluginError):
    """A component raised while being built or run, or broke what it declares (channels, stride);
    the message names its TOML path and plugin distribution, ``ctxseg --debug`` shows the traceback."""


class MissingExtraError(CtxsegError):
    """An optional package that a component or command needs is not installed; the message
    names it and the pip command of the extra that brings it. The contract kit reports such a
    component as not checked here, not as broken."""


class WeightsError(CtxsegError):
    """A weights or checkpoint file is unreadable or does not match its model."""


class DataError(CtxsegError):
    """A dataset file is missing, unreadable or inconsistent; the message names the file."""


class WriteError(CtxsegError):
    """A file could not be written: no space left, permission denied, a read-only file system.

    The message names the file, why, what is intact and what to do: ``<path>: <reason>;
    <intact>; <remedy> and <rerun>``. The writer knows the first two; a command that knows
    more (a run's last checkpoint, the masks already written) says it with :meth:`saying`.
    """

    def __init__(self, path: object, reason: str, remedy: str, intact: str, rerun: str = "run again"):
        super().__init__(path, reason, remedy, intact, rerun)  # all in args: it pickles (torchrun) as it is
        self.path, self.reason, self.remedy = path, reason, remedy

    def __str__(self) -> str:
        path, reason, remedy, intact, rerun = self.args
        return f"{path}: {reason}; {intact}; {remedy} and {rerun}"

    def saying(self, intact: str, rerun: str = "run again") -> WriteError:
        """The same fault, with what is intact and how to run again as the command knows them."""
        return WriteError(self.path, self.reason, self.remedy, intact, rerun)
