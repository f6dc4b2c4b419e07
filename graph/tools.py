"""The tool registry: names, argument schemas, descriptions, role permissions and risk rules.

Everything that decides what a tool call may do is data here (evaluated by guard_tools with
`core.guardrails.policy_rules`), never left to the model:
- `ROLE_TOOLS`: which tools each caller role may use (`RunContext.role`);
- `RISK_RULES`: (tool, condition, action) rows; the strictest matching action wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from core.guardrails.policy_rules import RiskRule

ORDER_ID_PATTERN = r"^LS-\d{5}$"

Risk = Literal["allow", "approve", "deny"]


class SearchPoliciesArgs(BaseModel):
    """Arguments of `search_policies`."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=500, description="What to look for.")
    k: int = Field(default=4, ge=1, le=10, description="How many excerpts to return.")


class GetOrderArgs(BaseModel):
    """Arguments of `get_order`."""

    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(pattern=ORDER_ID_PATTERN, description="Order id such as LS-10001.")


Money = Annotated[
    Decimal,
    Field(gt=0, max_digits=12, decimal_places=2),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.01}),
]


class IssueRefundArgs(BaseModel):
    """Arguments of `issue_refund`."""

    model_config = ConfigDict(extra="forbid")
    order_id: str = Field(pattern=ORDER_ID_PATTERN, description="Order id such as LS-10001.")
    amount: Money = Field(description="Refund amount in the order's currency, e.g. 49.90.")
    reason: str = Field(min_length=1, max_length=500, description="Why the customer is refunded.")


@dataclass(frozen=True, kw_only=True)
class ToolSpec:
    """A tool the model may be offered: name, description and argument schema."""

    name: str
    description: str
    args_model: type[BaseModel]
    side_effect: bool = False
    """True for a tool that changes the world (a refund), not only reads it."""

    def openai_schema(self) -> dict[str, Any]:
        """Return the OpenAI function-tool definition offered to the model."""
        params = self.args_model.model_json_schema()
        params.pop("title", None)
        params.pop("description", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }


TOOLS: Mapping[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            name="search_policies",
            description="Search Larkspur's internal policy documents; returns excerpts with ids.",
            args_model=SearchPoliciesArgs,
        ),
        ToolSpec(
            name="get_order",
            description="Look up an order: status, total, refunded and refundable amounts, items.",
            args_model=GetOrderArgs,
        ),
        ToolSpec(
            name="issue_refund",
            description=(
                "Refund part or all of an order to the original payment method. Refunds above "
                "the approval threshold are held until a manager approves them."
            ),
            args_model=IssueRefundArgs,
            side_effect=True,
        ),
    )
}

DEFAULT_ALLOWED_TOOLS: tuple[str, ...] = tuple(TOOLS)

ROLE_TOOLS: Mapping[str, tuple[str, ...]] = {
    "user": DEFAULT_ALLOWED_TOOLS,
    "approver": DEFAULT_ALLOWED_TOOLS,
    "admin": DEFAULT_ALLOWED_TOOLS,
    "readonly": ("search_policies", "get_order"),
}
"""Tools per caller role. `user` is a support agent (Approval Matrix: Tier 1/2), who may issue
refunds up to the threshold; approvers and admins get no extra power through the assistant
(their approvals are recorded decisions, not chat requests); `readonly` (kiosks, public FAQ
assistants) only reads. A role not listed gets no tools: fail closed.
`STEWARD_ROLE_TOOLS` replaces this table."""

RISK_RULES: tuple[RiskRule, ...] = (
    RiskRule(
        tool="issue_refund",
        field="amount",
        op=">",
        value="$refund_deny_above",
        action="deny",
        code="refund_above_hard_limit",
        description="refunds above STEWARD_REFUND_DENY_ABOVE are handled by finance, "
        "never through the assistant",
    ),
    RiskRule(
        tool="issue_refund",
        field="amount",
        op=">",
        value="$refund_approval_threshold",
        action="approve",
        code="refund_above_threshold",
        description="refunds above the approval threshold need a manager's recorded decision",
    ),
    RiskRule(
        tool="issue_refund",
        field="order_refund_total",
        op=">",
        value="$refund_approval_threshold",
        action="approve",
        code="split_refund",
        description="refunds of one order in this conversation add up to more than the "
        "approval threshold (splitting a refund does not avoid approval)",
    ),
    RiskRule(
        tool="issue_refund",
        field="order_id_from_user",
        op="is_false",
        action="approve",
        code="order_not_from_user",
        description="the order id was never written by the user (it came from a document or "
        "a tool result)",
    ),
    RiskRule(
        tool="issue_refund",
        field="amount_from_user",
        op="is_false",
        action="approve",
        code="amount_not_from_user",
        description="the amount was never written by the user (it came from a document, a "
        "tool result or the model)",
    ),
)
"""The built-in risk rules; `STEWARD_TOOL_RULES` adds more (the strictest action wins)."""
