"""Cross-field rules, written once: CEL for the API server, Python for `validate` and the operator.

A model lists its rules in ``cel_rules``; ``ApiModel`` checks them in Python and the CRD
generator attaches them to that model's schema as ``x-kubernetes-validations``.
"""

from dataclasses import dataclass
from typing import Callable

from pydantic_core import PydanticCustomError


@dataclass(frozen=True)
class CrossFieldRule:
    cel: str  # CEL with self = the model's object
    field: str  # path relative to the model ("" = the model itself), shown to the user
    message: str
    holds: Callable[[object], bool]


def check_rules(model, rules: tuple[CrossFieldRule, ...]) -> None:
    """Raise one error listing every broken rule, so the user sees them all at once."""
    broken = [(rule.field, rule.message) for rule in rules if not rule.holds(model)]
    if broken:
        raise PydanticCustomError("cel_rule", "{summary}", {
            "summary": "; ".join(f"{f}: {m}" if f else m for f, m in broken),
            "broken": broken,
        })
