"""The approval interrupt speaks agent-chat-ui's HITL shape and validates resumes strictly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from graph.state import PlannedCall
from nodes.approval import approval_request, resume_schema

PENDING = [
    PlannedCall(
        call_id="c1",
        name="issue_refund",
        args={"order_id": "LS-10007", "amount": "700.00", "reason": "torn"},
        verdict="approve",
        reason="requires approval (above 500 USD)",
        approval=None,
    )
]


def test_request_payload_shape() -> None:
    payload = approval_request(PENDING)
    assert payload["action_requests"][0]["name"] == "issue_refund"
    assert payload["action_requests"][0]["args"]["amount"] == "700.00"
    assert "700.00" in payload["action_requests"][0]["description"]
    assert payload["review_configs"] == [
        {"action_name": "issue_refund", "allowed_decisions": ["approve", "edit", "reject"]}
    ]


@pytest.mark.parametrize(
    "resume",
    [
        {"decisions": [{"type": "approve"}]},
        {"decisions": [{"type": "reject", "message": "no"}]},
        {
            "decisions": [
                {
                    "type": "edit",
                    "edited_action": {
                        "name": "issue_refund",
                        "args": {"order_id": "LS-10007", "amount": 50, "reason": "r"},
                    },
                }
            ]
        },
    ],
)
def test_valid_resumes(resume: dict[str, object]) -> None:
    resume_schema(PENDING).model_validate(resume)


@pytest.mark.parametrize(
    "resume",
    [
        {"decisions": []},
        {"decisions": [{"type": "approve"}, {"type": "approve"}]},
        {"decisions": [{"type": "accept"}]},
        {
            "decisions": [
                {
                    "type": "edit",
                    "edited_action": {"name": "get_order", "args": {"order_id": "LS-10007"}},
                }
            ]
        },
        {
            "decisions": [
                {
                    "type": "edit",
                    "edited_action": {
                        "name": "issue_refund",
                        "args": {"order_id": "LS-10007", "amount": -1, "reason": "r"},
                    },
                }
            ]
        },
        {"approve": True},
        "approve",
    ],
)
def test_invalid_resumes_are_rejected(resume: object) -> None:
    with pytest.raises(ValidationError):
        resume_schema(PENDING).model_validate(resume)
