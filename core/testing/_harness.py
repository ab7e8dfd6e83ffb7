"""What every check shares: naming the component, building its config, seeding, hypothesis settings."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import torch
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from torch import Tensor

from ctxseg.errors import MissingExtraError, SpecError
from ctxseg.registry import Kind
from ctxseg.spec.convert import structure
from ctxseg.threads import one_thread

BATCH = 2
"""Two samples: enough to see leakage across the batch, and batch norm trains on it."""

_HEAD_CHANNELS = st.integers(1, 16)
_CLASSES = st.integers(1, 6)
_SIDE = st.integers(1, 12)
_SEED = st.integers(0, 2**31 - 1)


def _single_threaded(check: Callable[..., None]) -> Callable[..., None]:
    """Run a check on one torch thread: its tensors are tiny, and on a busy machine
    (CI, ``pytest -n``) idle worker threads spinning for a core make it several times slower."""

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        with one_thread():
            check(*args, **kwargs)

    return wrapper


def _who(kind: Kind, cls: type, name: str | None) -> str:
    return f"{kind} {name or getattr(cls, '__qualname__', repr(cls))!r}"


def _fail(who: str, message: str) -> None:
    raise AssertionError(f"{who}: {message}")


def _make_config(who: str, cls: type, config: Any) -> Any:
    """The component's ``Config`` from an instance, a TOML-like table or ``None`` (defaults).

    A table goes through the project's strict converter, so an example is read exactly
    as the same table in a spec would be (lists become tuples, nested tables configs).
    """
    config_cls = getattr(cls, "Config", None)
    if not (isinstance(config_cls, type) and attrs.has(config_cls)):
        _fail(who, "has no attrs class `Config` holding its parameters")
    if isinstance(config, config_cls):
        return config
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        _fail(who, f"config must be a {config_cls.__qualname__} or a parameter table, got {config!r}")
    try:
        return structure(dict(config), config_cls, source="parameters")
    except SpecError as error:
        raise AssertionError(f"{who}: its parameter table {dict(config)!r} does not fit its Config:\n{error}") from None


def _construct(who: str, build: Callable[[], Any], where: str) -> Any:
    try:
        return build()
    except MissingExtraError:
        raise  # not the component's fault: it cannot be checked where its optional package is absent
    except Exception as error:  # noqa: BLE001 - any constructor argument within the contract must work
        suffix = f" ({where})" if where else ""
        raise AssertionError(f"{who}: constructor raised {type(error).__name__}: {error}{suffix}") from error


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator for the block and restore the caller's state after it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,  # the same examples on every run: CI failures reproduce
        database=None,
        report_multiple_bugs=False,  # one clear AssertionError, not an exception group
        phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no "explain": it reruns too much
        suppress_health_check=[HealthCheck.too_slow],
    )


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"
