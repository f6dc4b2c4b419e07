"""Prompt templates; formatted at call time, never inline in nodes."""

SYSTEM_PROMPT = """You are Steward, the support and operations assistant of Larkspur Supply Co.
Answer only from the company policy excerpts in <context> and from tool results.
If neither <context> nor a search_policies result covers the question, do not answer it from
general knowledge and do not guess a policy: say that you don't know because our policies don't
cover it, cite nothing, and say that a person can help: <contact>{contact}</contact>
Tools: search_policies finds more policy text; get_order looks up an order; issue_refund refunds
an order (refunds above {threshold} {currency} are held for a manager's approval).
Never claim an action happened unless a tool result says it did.

When you give your final answer, reply with exactly one JSON object and nothing else:
{{"answer": "<your answer to the customer>", "sources": ["<chunk id>", ...]}}
where each source is a chunk id in square brackets from <context> or from a search_policies
result that supports the answer. Use an empty list when no policy text supports it.

<context>
{context}
</context>"""

CONTEXT_CHUNK = "[{id}] ({title}) {text}"

NO_CONTEXT = "(no policy excerpts matched this question)"

OUT_OF_SCOPE_ANSWER = (
    "I don't know the answer to that: I don't have a policy that covers it, and I only answer "
    "from Larkspur's policies. A person can help you: {contact}. I can help with your orders "
    "(tell me the order number, it starts with LS-), refunds, returns, shipping and our other "
    "policies."
)
"""The honest answer of a turn with no policy chunk above the relevance floor and no tool
result (validate); `{contact}` is STEWARD_SUPPORT_CONTACT."""

REPAIR_PROMPT = """Your last reply was not a valid final answer: {error}
Reply again with exactly one JSON object: {{"answer": "...", "sources": ["<chunk id>", ...]}}."""

REFUSAL_ANSWERS: dict[str, str] = {
    "empty_input": "I didn't receive a question. What can I help you with?",
    "input_too_large": (
        "Your message is longer than I can accept. Please shorten it and send it again."
    ),
    "unsupported_content": "I can only read text messages. Please describe your request in text.",
    "invalid_encoding": "Your message contained characters I can't read. Please resend it as text.",
    "prompt_injection": (
        "I can't act on instructions that try to change how I work or skip our approval "
        "rules. Please describe what you need help with, and I'll gladly assist."
    ),
    "jailbreak": (
        "I can only help as Larkspur's support assistant, within our policies. "
        "What can I help you with today?"
    ),
    "pii_detected": (
        "For your safety, please don't share card numbers, bank details, ID numbers, "
        "passwords or API keys here. Send your question again without them."
    ),
    "budget_exceeded": (
        "I've reached the usage limit for now, so I can't answer this request. "
        "Please try again later or contact our support team."
    ),
}

FALLBACK_ANSWER = (
    "I'm sorry, I couldn't produce a reliable answer this time. "
    "A member of our support team can help you further."
)

REFUND_CLAIM_REWRITE = (
    "I haven't issued a refund in this conversation turn, so I can't confirm one. {actions}"
)
"""Replaces an answer that claims a refund no executed refund backs (validate)."""

ACTION_SUMMARIES: dict[str, str] = {
    "executed": "{name} on {target} was completed.",
    "rejected": "The {name} request on {target} was rejected by a reviewer.",
    "denied": "The {name} request on {target} was not allowed.",
    "failed": "The {name} request on {target} failed.",
    "pending_approval": "The {name} request on {target} is waiting for a manager's approval.",
}
"""One truthful sentence per action record, used by the safe answers of validate."""

REFUND_CLAIM_NO_ACTIONS = "No action was taken; a team member can help if you need a refund."
