"""Tool risk rules as data: (tool, condition, action), evaluated on validated arguments.

A rule reads one field of a `CallFacts` mapping (the call's validated arguments plus facts the
guard derives: `role`, `order_refund_total`, `order_id_from_user`, `amount_from_user`),
compares it with a value (a literal, or `$setting_name` for a Steward setting such as
`$refund_approval_threshold`), and when it holds, proposes an action. The strictest proposal
wins: deny > approve (hold for a person) > allow. Rules come from `graph.tools.RISK_RULES`
plus `STEWARD_TOOL_RULES` (JSON list of the same fields).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.settings import Settings

Action = Literal["allow", "approve", "deny"]
Op = Literal[">", ">=", "<", "<=", "==", "!=", "in", "not_in", "is_true", "is_false", "always"]

SEVERITY: dict[Action, int] = {"allow": 0, "approve": 1, "deny": 2}


class RiskRule(BaseModel):
    """When `field op value` holds for a call of `tool`, propose `action` with reason `code`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str = Field(description="Tool name, or `*` for every tool.")
    field: str = Field(default="", description="Argument or derived fact to test.")
    op: Op = "always"
    value: Any = None
    """A literal, or `$name` for a Settings attribute (None disables the rule)."""
    action: Action
    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Reason code, logged.")
    roles: tuple[str, ...] = ()
    """Apply only to these roles (empty: every role)."""
    description: str = ""


class RuleMatch(BaseModel):
    """A rule that fired for a call."""

    model_config = ConfigDict(frozen=True)
    action: Action
    code: str
    description: str


def resolve(value: Any, settings: Settings) -> Any:
    """Replace `$setting_name` with the setting's value."""
    if isinstance(value, str) and value.startswith("$"):
        return getattr(settings, value[1:])
    return value


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def holds(rule: RiskRule, facts: Mapping[str, Any], settings: Settings) -> bool:
    """Whether the rule's condition is true for these facts (missing facts never match)."""
    if rule.op == "always":
        return True
    if rule.field not in facts:
        return False
    actual = facts[rule.field]
    if rule.op == "is_true":
        return actual is True
    if rule.op == "is_false":
        return actual is False
    expected = resolve(rule.value, settings)
    if expected is None:
        return False
    if rule.op in ("in", "not_in"):
        members = {str(v) for v in expected}
        return (str(actual) in members) == (rule.op == "in")
    if rule.op in ("==", "!="):
        return (str(actual) == str(expected)) == (rule.op == "==")
    left, right = _number(actual), _number(expected)
    if left is None or right is None:
        return False
    return {
        ">": left > right,
        ">=": left >= right,
        "<": left < right,
        "<=": left <= right,
    }[rule.op]


def evaluate(
    tool: str, facts: Mapping[str, Any], rules: Iterable[RiskRule], settings: Settings
) -> tuple[Action, list[RuleMatch]]:
    """Return the strictest action the matching rules propose (allow when none match)."""
    matches = [
        RuleMatch(action=rule.action, code=rule.code, description=rule.description)
        for rule in rules
        if rule.tool in (tool, "*")
        and (not rule.roles or str(facts.get("role")) in rule.roles)
        and holds(rule, facts, settings)
    ]
    verdict: Action = "allow"
    for match in matches:
        if SEVERITY[match.action] > SEVERITY[verdict]:
            verdict = match.action
    return verdict, matches


def parse_rules(raw: Iterable[Mapping[str, Any]]) -> tuple[RiskRule, ...]:
    """Validate rules given as JSON objects (e.g. `STEWARD_TOOL_RULES`)."""
    return tuple(RiskRule.model_validate(item) for item in raw)


__all__ = [
    "SEVERITY",
    "Action",
    "RiskRule",
    "RuleMatch",
    "evaluate",
    "holds",
    "parse_rules",
    "resolve",
]
