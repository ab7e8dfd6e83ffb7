"""Plugin discovery: hook specifications, component and converter records, and the registry."""

from .component import Component, Kind
from .converter import Conversion, Converter
from .discovery import (
    AUTOLOAD_ENV,
    STRICT_ENV,
    PluginFailure,
    PluginWarning,
    Registry,
    default_registry,
    reset_default_registry,
)
from .hookspec import hookimpl

__all__ = [
    "AUTOLOAD_ENV",
    "STRICT_ENV",
    "Component",
    "Conversion",
    "Converter",
    "Kind",
    "PluginFailure",
    "PluginWarning",
    "Registry",
    "default_registry",
    "hookimpl",
    "reset_default_registry",
]
