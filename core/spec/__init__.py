"""The TOML spec: its types (:mod:`.schema`), their conversion (:mod:`.convert`), loading (:mod:`.load`)
with ``extends`` (:mod:`.merge`) and ``--set`` overrides (:mod:`.override`).

Plugins may use the types (a config field holding a path is a ``FilePath`` or ``FolderPath``,
:mod:`.paths`); ``load_spec`` and ``spec_from_dict`` turn TOML into them.
"""

from ctxseg.spec.load import load_spec, spec_from_dict
from ctxseg.spec.override import Override
from ctxseg.spec.paths import FilePath, FolderPath
from ctxseg.spec.schema import (
    AuxRef,
    BackboneRef,
    CallbackRef,
    ClassifierSpec,
    ContextRef,
    DatasetRef,
    DataSpec,
    DropoutSpec,
    FusionRef,
    LossRef,
    MetricRef,
    ModelSpec,
    ModuleRef,
    OptimizerRef,
    PassesRef,
    Ref,
    RunSpec,
    ScheduleRef,
    Spec,
    TestSpec,
)

__all__ = [
    "AuxRef", "BackboneRef", "CallbackRef", "ClassifierSpec", "ContextRef", "DataSpec", "DatasetRef", "DropoutSpec",
    "FilePath", "FolderPath", "FusionRef", "LossRef", "MetricRef", "ModelSpec", "ModuleRef", "OptimizerRef",
    "Override", "PassesRef", "Ref", "RunSpec", "ScheduleRef", "Spec", "TestSpec", "load_spec", "spec_from_dict",
]
