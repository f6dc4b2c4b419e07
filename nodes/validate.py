"""validate: turn the model's final reply into a safe AgentResponse.

Checks, in order: a stopped tool loop (limit or budget) gets a safe answer; a turn with nothing
to stand on (no policy chunk above the relevance floor, no tool result but empty searches) gets
the honest out-of-scope answer, whatever the model said; the reply must be the FinalAnswer JSON
(bounded repair, then a fallback); citations must be chunks retrieved in this run; PII and
secrets are redacted from the answer (values quoted from this turn's policy excerpts stay); an
answer claiming a refund that no executed refund backs is replaced by a truthful summary of the
turn's actions. Every intervention is logged with a reason code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage, ToolMessage
from pydantic import ValidationError

from core.budget.budgets import BUDGET_EXCEEDED
from core.errors import StewardError
from core.guardrails.claims import unbacked_claims
from core.guardrails.pii import redact_text
from core.guardrails.provenance import executed_refunds
from core.observability.metrics import record_guardrail_block
from graph.deps import Deps
from graph.prompts import (
    ACTION_SUMMARIES,
    FALLBACK_ANSWER,
    OUT_OF_SCOPE_ANSWER,
    REFUND_CLAIM_NO_ACTIONS,
    REFUND_CLAIM_REWRITE,
    REFUSAL_ANSWERS,
    REPAIR_PROMPT,
)
from graph.schemas import ActionRecord, AgentResponse, FinalAnswer
from graph.state import State
from nodes.messages import FOLLOW_UP_WORDS, REFERS_BACK, last_ai, text_of
from nodes.types import Node

log = logging.getLogger(__name__)

OUT_OF_SCOPE = "out_of_scope"
"""Reason code (in `guardrail_codes`, logs and metrics) of a turn answered with
OUT_OF_SCOPE_ANSWER; the response's `refusal` stays None: it is an answer, not a refusal."""

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class AnswerInvalid(StewardError, ValueError):
    """The model's final reply is not a valid FinalAnswer."""


def parse_final_answer(text: str) -> FinalAnswer:
    """Parse the model's reply as the FinalAnswer JSON object (code fences tolerated)."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise AnswerInvalid(f"not JSON ({exc.msg})") from exc
    try:
        return FinalAnswer.model_validate(data)
    except ValidationError as exc:
        raise AnswerInvalid(f"schema mismatch: {exc.errors()[0]['msg']}") from exc


def keep_known_sources(sources: list[str], known: set[str]) -> tuple[list[str], list[str]]:
    """Split cited ids into those retrieved in this run (kept, deduplicated) and the rest."""
    kept: list[str] = []
    dropped: list[str] = []
    for source in sources:
        if source in known:
            if source not in kept:
                kept.append(source)
        else:
            dropped.append(source)
    return kept, dropped


def summarize_actions(actions: Sequence[ActionRecord]) -> str:
    """One truthful sentence per action of the turn (from the records, never the model)."""
    sentences = []
    for action in actions:
        args = action.get("args") or {}
        target = args.get("order_id") or "your request"
        if action["name"] == "issue_refund" and args.get("amount"):
            target = f"{target} ({args['amount']} USD)"
        template = ACTION_SUMMARIES.get(action["status"], ACTION_SUMMARIES["failed"])
        sentences.append(template.format(name=action["name"].replace("_", " "), target=target))
    return " ".join(sentences)


def refunded_orders(actions: Sequence[ActionRecord], messages: Sequence[AnyMessage]) -> set[str]:
    """Orders with an executed refund in this turn (action records) or this thread (results)."""
    orders = {
        str(a["args"].get("order_id", "")).upper()
        for a in actions
        if a["name"] == "issue_refund" and a["status"] == "executed"
    }
    return orders | set(executed_refunds(messages))


def check_answer(
    answer: str,
    *,
    actions: Sequence[ActionRecord],
    messages: Sequence[AnyMessage],
    policy_text: str,
    redact: bool,
    claims: bool,
) -> tuple[str, list[str]]:
    """Apply the output guardrails to an answer; returns (answer, reason codes of changes)."""
    codes: list[str] = []
    if redact:
        redaction = redact_text(answer, keep_if_in=policy_text)
        if redaction.changed:
            answer = redaction.text
            codes.append("output_pii_redacted")
            log.warning(
                "guardrail decision",
                extra={
                    "guardrail": "output_pii",
                    "decision": "redact",
                    "reason_code": "output_pii_redacted",
                    "entities": list(redaction.entities),
                },
            )
    if claims and unbacked_claims(answer, refunded_orders(actions, messages)):
        answer = REFUND_CLAIM_REWRITE.format(
            actions=summarize_actions(actions) or REFUND_CLAIM_NO_ACTIONS
        )
        codes.append("unbacked_refund_claim")
        log.warning(
            "guardrail decision",
            extra={
                "guardrail": "refund_claim",
                "decision": "rewrite",
                "reason_code": "unbacked_refund_claim",
            },
        )
    return answer, codes


SMALL_TALK = re.compile(
    r"^\W*(?:(?:hi|hello|hey|hiya|good\s+(?:morning|afternoon|evening)|thanks|thank\s+you"
    r"(?:\s+(?:so|very)\s+much)?|thx|ty|cheers|great|perfect|awesome|ok(?:ay)?|cool|bye|goodbye|"
    r"see\s+you|have\s+a\s+(?:nice|good|great)\s+day|that'?s\s+all(?:\s+i\s+needed)?|"
    r"that\s+(?:helps|helped)|can\s+you\s+help(?:\s+me)?|are\s+you\s+there|"
    r"i\s+have\s+a\s+question)\b[\s,.!?]*)+$",
    re.IGNORECASE,
)
"""A message that is only a greeting, thanks, a closing or an opener: it asks about nothing, so
the model's own reply stands (it cites nothing, and the output checks still apply)."""


def is_ungrounded(state: State) -> bool:
    """True when nothing backs an answer: no policy chunk above the floor, no tool result.

    Retrieval (the `retrieve` node and `search_policies`) only returns chunks at or above
    STEWARD_RETRIEVAL_MIN_SCORE, so an empty `retrieved` means no policy covers the question.
    Backed as well: a tool call of this turn other than a policy search (an order look-up, a
    refund, a denied call); small talk; and a short follow-up (`FOLLOW_UP_WORDS`) that points
    back (`REFERS_BACK`) right after a turn whose tools did something ("did that go through?").
    An older tool result backs nothing: after one order look-up a thread does not get answers
    from general knowledge ("Who won the World Cup?").
    """
    if state.get("retrieved"):
        return False
    if any(action["name"] != "search_policies" for action in state.get("actions", [])):
        return False
    messages = state["messages"]
    turns = [
        i for i, m in enumerate(messages) if isinstance(m, HumanMessage) and m.name != "validator"
    ]
    if not turns:
        return True
    question = text_of(messages[turns[-1]])
    if SMALL_TALK.match(question):
        return False
    if len(turns) < 2 or len(question.split()) > FOLLOW_UP_WORDS:
        return True
    if not REFERS_BACK.search(question):
        return True
    previous_turn = messages[turns[-2] : turns[-1]]
    return not any(
        isinstance(message, ToolMessage) and message.name != "search_policies"
        for message in previous_turn
    )


def out_of_scope(actions: list[ActionRecord], contact: str) -> AgentResponse:
    """The honest answer when the policies do not cover the question: no citation, a contact."""
    log.info(
        "guardrail decision",
        extra={"guardrail": "relevance_floor", "decision": "rewrite", "reason_code": OUT_OF_SCOPE},
    )
    record_guardrail_block(OUT_OF_SCOPE, stage="output")
    return AgentResponse(
        answer=OUT_OF_SCOPE_ANSWER.format(contact=contact),
        sources=[],
        actions=actions,
        refusal=None,
    )


def make_validate(deps: Deps) -> Node:
    """Build the node that turns the model's final reply into an AgentResponse."""
    settings = deps.settings

    async def validate(state: State) -> dict[str, Any]:
        """Validate the answer; ask the model to repair it a bounded number of times."""
        actions = state.get("actions", [])
        stop = state.get("stop_reason")
        if stop == BUDGET_EXCEEDED:
            summary = summarize_actions(actions)
            refusal = " ".join(filter(None, [REFUSAL_ANSWERS[BUDGET_EXCEEDED], summary]))
            return {
                "response": AgentResponse(
                    answer=refusal, sources=[], actions=actions, refusal=BUDGET_EXCEEDED
                )
            }
        if stop:
            log.warning("tool loop stopped early", extra={"stop_reason": stop})
            return {"response": fallback(actions)}
        if is_ungrounded(state):
            return {
                "response": out_of_scope(actions, settings.support_contact),
                "guardrail_codes": [*state.get("guardrail_codes", []), OUT_OF_SCOPE],
            }
        try:
            answer = parse_final_answer(text_of(last_ai(state["messages"])))
        except AnswerInvalid as exc:
            repairs = state.get("repairs", 0)
            if repairs < settings.max_repairs:
                return {
                    "repairs": repairs + 1,
                    "messages": [HumanMessage(REPAIR_PROMPT.format(error=exc), name="validator")],
                }
            log.warning("answer invalid after repairs", extra={"error": str(exc)})
            return {"response": fallback(actions)}
        retrieved = state.get("retrieved", [])
        known = {chunk["id"] for chunk in retrieved}
        sources, dropped = keep_known_sources(answer.sources, known)
        if dropped:
            log.warning(
                "removed citations not retrieved in this run",
                extra={"dropped": dropped, "reason_code": "unknown_citation"},
            )
        text, codes = await asyncio.to_thread(
            check_answer,
            answer.answer,
            actions=actions,
            messages=state["messages"],
            # Values quoted from this turn's policy excerpts, and the published support contact,
            # are not personal data to mask.
            policy_text="\n".join([*(c["text"] for c in retrieved), settings.support_contact]),
            redact=settings.guard_output_pii,
            claims=settings.guard_refund_claims,
        )
        for code in codes:
            record_guardrail_block(code, stage="output")
        update: dict[str, Any] = {
            "response": AgentResponse(answer=text, sources=sources, actions=actions, refusal=None)
        }
        if codes:
            update["guardrail_codes"] = [*state.get("guardrail_codes", []), *codes]
        return update

    return validate


def fallback(actions: list[Any]) -> AgentResponse:
    """The safe answer when no valid one could be produced; actions stay truthful."""
    return AgentResponse(answer=FALLBACK_ANSWER, sources=[], actions=actions, refusal=None)


__all__ = [
    "OUT_OF_SCOPE",
    "AnswerInvalid",
    "check_answer",
    "fallback",
    "is_ungrounded",
    "keep_known_sources",
    "make_validate",
    "out_of_scope",
    "parse_final_answer",
    "summarize_actions",
]
