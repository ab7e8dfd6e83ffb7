"""The TOML spec: its types (:mod:`.schema`), their conversion (:mod:`.convert`) and loading (:mod:`.load`).

Plugins may use the types; ``load_spec`` and ``spec_from_dict`` turn TOML into them.
"""

from ctxseg.spec.load import load_spec, spec_from_dict
from ctxseg.spec.schema import (
    AuxRef,
    BackboneRef,
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
    "AuxRef", "BackboneRef", "ClassifierSpec", "ContextRef", "DataSpec", "DatasetRef", "DropoutSpec",
    "FusionRef", "LossRef", "MetricRef", "ModelSpec", "ModuleRef", "OptimizerRef", "PassesRef", "Ref", "RunSpec",
    "ScheduleRef", "Spec", "TestSpec", "load_spec", "spec_from_dict",
]
