"""The Freeze section: rules -> plan -> apply (methods, BN policy) -> audit, schedule, report.

See docs/freeze.md for the user-facing description.
"""
from .audit import FreezeAudit, FrozenTensorChanged
from .plan import FreezePlan, build_freeze_plan
from .report import format_report, write_report
from .spec import FreezeSpec, parse_freeze_spec
from .state import FreezeState, ParamState

__all__ = ["FreezeAudit", "FrozenTensorChanged", "FreezePlan", "build_freeze_plan", "format_report",
           "write_report", "FreezeSpec", "parse_freeze_spec", "FreezeState", "ParamState"]
