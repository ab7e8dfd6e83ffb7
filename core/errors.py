"""Errors caused by user input: the CLI prints their message, never a traceback."""

from __future__ import annotations

__all__ = ["ComponentError", "CtxsegError", "DataError", "PluginError", "SpecError", "WeightsError"]


class CtxsegError(Exception):
    """Base of every error a user can fix (bad spec, weights, data or plugin)."""


class SpecError(CtxsegError):
    """A TOML spec is invalid; the message names the file, the key path and what was expected."""


class PluginError(CtxsegError):
    """A plugin failed to load or conflicts with another; the message names the distribution."""


class ComponentError(PluginError):
    """A component raised while being built or run, or broke what it declares (channels, stride);
    the message names its TOML path and plugin distribution, ``ctxseg --debug`` shows the traceback."""


class WeightsError(CtxsegError):
    """A weights or checkpoint file is unreadable or does not match its model."""


class DataError(CtxsegError):
    """A dataset file is missing, unreadable or inconsistent; the message names the file."""
