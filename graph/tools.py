"""The tool registry: names, argument schemas, descriptions and risk rules, as data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

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
    """A tool the model may be offered, with the rule that decides how risky a call is."""

    name: str
    description: str
    args_model: type[BaseModel]
    risk: Callable[[BaseModel, Decimal], Risk]
    """Given validated arguments and the approval threshold, allow, require approval or deny."""

    def openai_schema(self) -> dict[str, Any]:
        """Return the OpenAI function-tool definition offered to the model."""
        params = self.args_model.model_json_schema()
        params.pop("title", None)
        params.pop("description", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": params},
        }


def _always_allow(_args: BaseModel, _threshold: Decimal) -> Risk:
    return "allow"


def refund_risk(args: BaseModel, threshold: Decimal) -> Risk:
    """Refunds above the threshold need a recorded human decision."""
    assert isinstance(args, IssueRefundArgs)
    return "approve" if args.amount > threshold else "allow"


TOOLS: Mapping[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec(
            name="search_policies",
            description="Search Larkspur's internal policy documents; returns excerpts with ids.",
            args_model=SearchPoliciesArgs,
            risk=_always_allow,
        ),
        ToolSpec(
            name="get_order",
            description="Look up an order: status, total, refunded and refundable amounts, items.",
            args_model=GetOrderArgs,
            risk=_always_allow,
        ),
        ToolSpec(
            name="issue_refund",
            description=(
                "Refund part or all of an order to the original payment method. Refunds above "
                "the approval threshold are held until a manager approves them."
            ),
            args_model=IssueRefundArgs,
            risk=refund_risk,
        ),
    )
}

DEFAULT_ALLOWED_TOOLS: tuple[str, ...] = tuple(TOOLS)
