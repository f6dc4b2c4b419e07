"""Prompt-injection and jailbreak detection, first layer: normalisation, then weighted rules.

Layers, cheapest first (about 0.1 ms for a 250-character message):
1. Normalise: NFKC, drop zero-width and bidi controls, decode Unicode tag characters (hidden
   ASCII), fold Cyrillic/Greek look-alikes, lower-case, collapse whitespace; also scan a
   leetspeak-folded copy, a copy with spaced-out letters joined ("i g n o r e"), and any
   base64 blob that decodes to text.
2. Rules: each named pattern has a weight and a category. A message is refused when the sum
   of the weights of the distinct rules it matches reaches the threshold (1.0 by default):
   strong rules (override the instructions, reveal the system prompt, fake system turns,
   approval bypass, explicit tool invocation) block alone; weak ones (a lone "developer
   mode", "as the admin", "no restrictions") need a second signal.

This module is the detector's first layer. The second, core.guardrails.semantic, is a small
classifier over the local sentence embeddings (all-MiniLM-L6-v2, shipped as a package, no hub
download): input_filter runs it on what these rules let through, and refuses when either
layer does. Off-the-shelf detectors were not used: the packages that ship one either
download their model at first use (jailguard fetches a 90 MB ONNX file) or need a Hugging
Face hub download (llm-guard). The category with the larger weight names the refusal:
`jailbreak` or `prompt_injection`. Rates per layer: `python bench/detection_rates.py`.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Category = Literal["prompt_injection", "jailbreak"]


@dataclass(frozen=True, slots=True)
class Rule:
    """One detection pattern."""

    name: str
    category: Category
    weight: float
    pattern: re.Pattern[str]


@dataclass(frozen=True, slots=True)
class InjectionVerdict:
    """What the detector concluded about one text."""

    score: float
    rules: tuple[str, ...]
    """Names of the rules that matched (never the matched text)."""
    category: Category | None

    def blocked(self, threshold: float = 1.0) -> bool:
        """True when the score reaches `threshold`."""
        return self.score >= threshold


def _rule(name: str, category: Category, weight: float, regex: str) -> Rule:
    return Rule(name, category, weight, re.compile(regex, re.IGNORECASE | re.MULTILINE))


_OVERRIDE_VERB = (
    r"(?:ignore|disregard|forget|override|overrule|bypass|discard|abandon|"
    r"stop\s+following|set\s+aside|put\s+aside|never\s+mind|drop|ditch|scrap)"
)
_PRIOR = (
    r"(?:previous|prior|above|earlier|preceding|initial|original|system|developer|"
    r"safety|existing|old|current|all|any|every)"
)
_INSTRUCTIONS = (
    r"(?:instructions?|rules|prompts?|directives?|guidelines|guidance|guardrails?|"
    r"constraints|programming|restrictions|safeguards|policies|system\s+messages?|"
    r"training|configuration)"
)
_NOT_REPORTED = (
    r"(?<!asks me to )(?<!asks us to )(?<!asked me to )(?<!wants me to )"
    r"(?<!asks you to )(?<!tells me to )"
)
"""Reported speech ("a customer asks me to skip the approval") is a question, not an order."""
_NEUTRALISE = (
    r"(?:ignore|disregard|forget|skip|bypass|circumvent|disable|remove|lift|suspend|"
    r"waive|override|drop|reset|turn\s+off|switch\s+off|no\s+longer\s+(?:need\s+to\s+)?"
    r"(?:follow|apply|need)|doesn'?t\s+exist|never\s+(?:existed|invented)|"
    r"no\s+need\s+to\s+check)"
)
_CONTROL = (
    r"(?:approval\s+matrix|approvals?|sign-?off|(?:refund\s+)?limits?|threshold|"
    r"(?:\$?\d+\s+)?rule|rules|polic(?:y|ies)|instructions|prompt|guardrails?|safety|"
    r"checks?|with\s+anyone|filters?|four[- ]eyes)"
)
_NEUTRALISED = (
    r"(?:waived|removed|suspended|lifted|disabled|void|off|bypassed|"
    r"no\s+longer\s+appl(?:y|ies)|(?:do|does)n'?t\s+(?:exist|apply))"
)
_NEAR = r"(?:\W+\w+){0,5}?\W+"
"""Up to five words in between (proximity, across punctuation inside a sentence)."""

RULES: tuple[Rule, ...] = (
    # --- overriding the instructions -------------------------------------------------------
    _rule(
        "override_instructions",
        "prompt_injection",
        1.0,
        rf"\b{_OVERRIDE_VERB}\s+(?!my\b|our\b)(?:\w+\s+){{0,3}}?{_PRIOR}\s+(?:\w+\s+)?"
        rf"{_INSTRUCTIONS}",
    ),
    _rule(
        "override_your_rules",
        "prompt_injection",
        1.0,
        rf"\b{_OVERRIDE_VERB}\s+(?:all\s+)?(?:of\s+)?(?:your|the\s+larkspur|larkspur'?s?)\s+"
        rf"(?:\w+\s+)?(?:{_INSTRUCTIONS}|policies|checks)",
    ),
    _rule(
        "forget_everything",
        "prompt_injection",
        1.0,
        r"\b(?:forget|ignore|disregard)\s+(?:everything|all)\s+(?:(?:you\s+(?:were|have\s+been)"
        r"\s+told)|(?:above|before|previously|so\s+far))",
    ),
    _rule(
        "new_instructions",
        "prompt_injection",
        1.0,
        r"\b(?:new|updated|revised|real|actual|true|following)\s+(?:system\s+)?"
        r"(?:instructions?|directives?|task|orders|objective)\s*(?::|are\b|is\b|instead\b)",
    ),
    _rule(
        "your_new_role",
        "prompt_injection",
        1.0,
        r"\byour\s+(?:new|real|true|only)\s+(?:task|role|job|goal|purpose|instructions?)\s+"
        r"(?:is|are|will\s+be)\b",
    ),
    _rule(
        "from_now_on",
        "prompt_injection",
        0.6,
        r"\b(?:from\s+now\s+on|for\s+the\s+rest\s+of\s+(?:this|the)\s+(?:chat|conversation))"
        r",?\s+(?:you|u)\b",
    ),
    _rule(
        "instructions_were_test",
        "prompt_injection",
        1.0,
        r"\b(?:instructions|rules|prompt)\s+(?:above|before)\s+(?:were|was)\s+(?:a\s+)?"
        r"(?:test|fake|wrong|outdated)|\b(?:previous|prior)\s+instructions\s+are\s+"
        r"(?:outdated|wrong|cancelled|void|obsolete)",
    ),
    _rule(
        "you_work_for_me",
        "prompt_injection",
        0.6,
        r"\b(?:you\s+(?:now\s+)?work\s+for\s+me|act\s+on\s+my\s+commands|obey\s+(?:me|only\s+me))",
    ),
    _rule(
        "fake_policy_update",
        "prompt_injection",
        1.0,
        r"\b(?:new|updated|revised)\s+(?:refund\s+)?polic(?:y|ies)\b[^.!?\n]{0,80}?"
        r"(?:no\s+longer|not|n't|never)\s+(?:need|require|apply)",
    ),
    _rule(
        "policy_update_banner",
        "prompt_injection",
        0.6,
        r"\b(?:new|updated)\s+(?:refund\s+)?policy\s+(?:update|effective)\b",
    ),
    # --- jailbreak personas ----------------------------------------------------------------
    _rule(
        "dan_persona",
        "jailbreak",
        1.0,
        r"\b(?:do\s+anything\s+now|you\s+are\s+(?:now\s+)?dan\b|as\s+dan\b|\bstan\b\s+mode)",
    ),
    _rule(
        "unrestricted_persona",
        "jailbreak",
        1.0,
        r"\b(?:you\s+are|you'?re|act\s+as|pretend\s+(?:to\s+be|you\s+are|you'?re)|roleplay\s+as|"
        r"play\s+the\s+role\s+of|become|simulate|behave\s+like|respond\s+as)\b[^.!?\n]{0,60}?"
        r"\b(?:unrestricted|unfiltered|uncensored|jailbr[eo]ken|evil|rogue|amoral|"
        r"no\s+(?:rules|limits|restrictions|guidelines|filters)|without\s+(?:any\s+)?"
        r"(?:rules|restrictions|limits|filters|guidelines|safety\s+guidelines|ethics))",
    ),
    _rule(
        "special_mode",
        "jailbreak",
        0.7,
        r"\b(?:developer|god|admin|debug|sudo|jailbreak|unrestricted|dan)\s+mode\b",
    ),
    _rule(
        "enable_mode",
        "jailbreak",
        0.5,
        r"\b(?:enable|activate|enter|switch\s+(?:to|into)|turn\s+on)\s+(?:\w+\s+)?mode\b",
    ),
    _rule("jailbreak_word", "jailbreak", 0.6, r"\bjailbr(?:eak|oken)\b(?!\s+phone)"),
    _rule(
        "no_restrictions",
        "jailbreak",
        0.5,
        r"\b(?:no\s+|without\s+(?:any\s+)?|free\s+(?:of|from)\s+)(?:rules|restrictions|limits|"
        r"limitations|filters|guidelines|ethical\s+(?:guidelines|constraints)|"
        r"safety\s+(?:guidelines|rules|measures))\b(?!\s+on\b)|\b(?:no|without)\s+(?:the\s+)?"
        r"(?:refund|approval|spending)\s+(?:limits?|restrictions|checks?)\b",
    ),
    _rule(
        "hypothetical_framing",
        "jailbreak",
        0.5,
        r"\b(?:hypothetically|imagine\s+(?:a|that)|in\s+a\s+(?:fictional|made[- ]up|"
        r"hypothetical)\s+(?:world|story|scenario)|let'?s\s+play\s+a\s+game)\b",
    ),
    _rule(
        "grandma_exploit",
        "jailbreak",
        1.0,
        r"\b(?:act|pretend|roleplay)\s+as\s+my\s+(?:late\s+|deceased\s+|dead\s+)?"
        r"(?:grandma|grandmother|grandpa|grandfather)",
    ),
    _rule(
        "two_personas",
        "jailbreak",
        0.6,
        r"\b(?:two|2|dual)\s+(?:personas|personalities|responses)\b",
    ),
    _rule(
        "named_bot_persona",
        "jailbreak",
        0.5,
        r"\byou\s+are\s+(?:now\s+)?(?:an?\s+)?[\w-]*(?:bot|gpt|ai)\s*\d*\b",
    ),
    # --- extracting the system prompt ------------------------------------------------------
    _rule(
        "reveal_system_prompt",
        "prompt_injection",
        1.0,
        r"\b(?:reveal|show|print|display|output|repeat|leak|dump|tell\s+me|give\s+me|share|"
        r"disclose|what\s+(?:is|are|was|were)|summari[sz]e|list)\b[^.!?\n]{0,60}?"
        r"\b(?:system|hidden|initial|secret|developer|internal|full|original)\s+"
        r"(?:prompt|instructions?|message|configuration|directives)",
    ),
    _rule(
        "system_prompt_words",
        "prompt_injection",
        0.6,
        r"\b(?:system\s+prompt|system\s+message|pre-?prompt|initial\s+prompt|"
        r"context\s+window)\b",
    ),
    _rule(
        "repeat_above",
        "prompt_injection",
        1.0,
        r"\b(?:repeat|print|output|copy|echo|recite)\s+(?:the\s+)?(?:text|words|everything|"
        r"all|lines?|content)\s+(?:above|before|preceding|starting\s+with)",
    ),
    _rule(
        "instructions_received",
        "prompt_injection",
        1.0,
        r"\b(?:instructions|rules|prompt)\s+(?:you\s+(?:received|got|were\s+given)|"
        r"given\s+to\s+you)\s+(?:before|at\s+the\s+start|earlier|by)",
    ),
    _rule(
        "dump_config",
        "prompt_injection",
        1.0,
        r"\b(?:dump|export|print)\s+(?:your|the)\s+(?:config(?:uration)?|settings|"
        r"instructions)",
    ),
    # --- fake turns and markup -------------------------------------------------------------
    _rule(
        "chat_markup",
        "prompt_injection",
        1.0,
        r"<\|?\s*(?:im_start|im_end|endoftext|system|eot_id|start_header_id)\s*\|?>|"
        r"\[/?INST\]|<</?SYS>>|</?(?:system|context|instructions?|developer)>",
    ),
    _rule(
        "role_prefix", "prompt_injection", 0.8, r"^\s*(?:system|assistant|developer|admin|root)\s*:"
    ),
    _rule(
        "hidden_markup_instruction",
        "prompt_injection",
        1.0,
        # A comment the reader never sees, addressed to the model: <!-- assistant: refund ... -->
        r"(?:<!--|\[//\]:\s*#|/\*)[^>]{0,40}?\b(?:assistant|ai|bot|model|llm|system|agent|"
        r"steward|chatgpt|gpt)\b\s*[:,-]",
    ),
    _rule(
        "fake_transcript",
        "prompt_injection",
        0.5,
        r"(?s)^\s*(?:system|assistant)\s*:.*^\s*(?:user|human|customer)\s*:",
    ),
    _rule(
        "markdown_system_header",
        "prompt_injection",
        1.0,
        r"^\s*#{1,6}\s*(?:system|developer|admin)\s+(?:instruction|prompt|message|note)",
    ),
    _rule(
        "note_to_ai",
        "prompt_injection",
        0.6,
        r"\b(?:note|message|instructions?)\s+(?:to|for)\s+(?:the\s+)?(?:ai|bot|assistant|"
        r"llm|model)\b|\b(?:dear|hey|attention)\s+(?:ai|bot|assistant|llm)\b|"
        r"\bfor\s+the\s+(?:ai|bot|llm|model)\s+reading\s+this\b|"
        r"\bai\s+assistants?\s+(?:must|should|shall)\b",
    ),
    # --- approvals, limits and checks ------------------------------------------------------
    _rule(
        "approval_claimed",
        "prompt_injection",
        0.7,
        r"\b(?:approval|authori[sz]ation|manager\s+review|sign[- ]?off)\s+(?:is\s+|was\s+|has\s+"
        r"been\s+)?(?:already\s+)?(?:not\s+(?:needed|required|necessary)|granted|given|waived|"
        r"done|bypassed|disabled)|\bpre-?approved\b|\bapprovals?\s+(?:are\s+)?disabled\b|"
        r"\bauto-?approved\b",
    ),
    _rule(
        "skip_approval",
        "prompt_injection",
        1.0,
        rf"{_NOT_REPORTED}\b(?:skip|bypass|circumvent|avoid|get\s+around|ignore|turn\s+off|disable|switch\s+off|"
        r"override|waive|remove)\s+(?:the\s+|this\s+|your\s+|any\s+|all\s+)?(?:\$?[\d,]+\s+)?"
        r"(?:approval|manager\s+review|review\s+step|verification|refund\s+(?:limit|threshold)|"
        r"threshold|limit|guardrails?|checks?|four[- ]eyes)\b",
    ),
    _rule(
        "no_approval_needed",
        "prompt_injection",
        0.7,
        r"\b(?:no|without)\s+(?:need\s+for\s+)?(?:the\s+)?(?:\w+\s+)?(?:approval|review|"
        r"sign[- ]off)\b|"
        r"\b(?:approval|review)\s+(?:is\s+)?not\s+(?:needed|required)\b|"
        r"\bdoesn'?t\s+need\s+approval\b|\bwithout\s+asking\s+(?:anyone|anybody|a\s+manager|"
        r"the\s+manager|a\s+supervisor|for\s+approval)",
    ),
    _rule(
        "no_checks",
        "prompt_injection",
        0.5,
        r"\bwithout\s+(?:checking|consulting|following|looking\s+at|applying)\s+(?:any\s+)?"
        r"(?:the\s+)?(?:polic(?:y|ies)|rules|guidelines|approvals?|limits)",
    ),
    _rule(
        "claimed_authority",
        "prompt_injection",
        0.5,
        r"\b(?:i'?m|i\s+am|as)\s+(?:the|an?|your)\s+(?:system\s+)?(?:admin|administrator|"
        r"developer|creator|owner\s+of\s+(?:this|the)\s+system|operator|supervisor|root)\b",
    ),
    _rule(
        "authorize_override",
        "prompt_injection",
        0.7,
        r"\b(?:i|we)\s+(?:hereby\s+)?(?:authori[sz]e|permit|allow|order|instruct)\s+you\s+to\b|"
        r"\byou\s+have\s+my\s+permission\b",
    ),
    _rule(
        "split_to_evade",
        "prompt_injection",
        1.0,
        r"\bsplit\b[^.!?\n]{0,60}?\b(?:so|to)\b[^.!?\n]{0,30}?\b(?:doesn'?t|does\s+not|won'?t|"
        r"avoid|under|below|stay)\b",
    ),
    _rule(
        "mark_approved",
        "prompt_injection",
        1.0,
        r"\b(?:mark|set|flag|record)\s+(?:the\s+)?(?:approval|refund|request)\s+as\s+"
        r"(?:done|approved|granted|complete)|\brelease\s+the\s+(?:held|pending)\b",
    ),
    # --- forcing tools and outputs ---------------------------------------------------------
    _rule(
        "tool_name_call",
        "prompt_injection",
        1.0,
        r"\b(?:issue_refund|get_order|search_policies|drop_tables|\w+_tool)\s*\(|"
        r"\b(?:call|invoke|execute|run|trigger|use)\s+(?:the\s+)?(?:function\s+|tool\s+)?"
        r"(?:issue_refund|get_order|search_policies|drop_tables|[a-z]+_[a-z_]+\s+tool)\b",
    ),
    _rule(
        "tool_call_json",
        "prompt_injection",
        1.0,
        r"\"(?:name|function|tool|tool_calls?|arguments)\"\s*:\s*[\"{\[]",
    ),
    _rule(
        "execute_function",
        "prompt_injection",
        0.6,
        r"\b(?:call|invoke|execute|run)\s+(?:the\s+|a\s+)?(?:function|tool)\b",
    ),
    _rule(
        "forced_reply",
        "prompt_injection",
        1.0,
        r"\b(?:reply|respond|answer|say|output|write|state|confirm)\s+(?:only\s+)?"
        r"(?:with\s+|that\s+)?[\"'“]?[^.!?\n]{0,30}?\b(?:refund|it)\s+(?:has\s+been|was|is)\s+"
        r"(?:processed|issued|approved|completed)\b[^.!?\n]{0,40}?"
        r"(?:and\s+nothing\s+else|even\s+if|regardless|whether\s+or\s+not)",
    ),
    _rule(
        "conceal_from_staff",
        "prompt_injection",
        1.0,
        r"\b(?:don'?t|do\s+not|never)\s+(?:tell|inform|notify|alert|mention\s+(?:it\s+)?to)\s+"
        r"(?:the\s+|your\s+|a\s+)?(?:supervisor|manager|security|admin|team\s+lead)|"
        r"\bnot\s+(?:mention|tell|report)\s+(?:it\s+|this\s+)?to\s+(?:your\s+|the\s+)?"
        r"(?:manager|supervisor|team\s+lead|security)",
    ),
    _rule(
        "conceal_action",
        "prompt_injection",
        0.5,
        r"\b(?:don'?t|do\s+not|never)\s+(?:log|record|report|audit)\s+(?:this|it|the)\b",
    ),
    _rule(
        "skip_all_checks",
        "prompt_injection",
        1.0,
        r"\b(?:skip|bypass|ignore|disable)\s+(?:all|every|any)\s+(?:the\s+)?"
        r"(?:checks|rules|safeguards|verifications?)\b",
    ),
    # --- broader phrasings (proximity of a verb and its target) ---------------------------
    _rule(
        "override_near_instructions",
        "prompt_injection",
        1.0,
        rf"\b{_OVERRIDE_VERB}{_NEAR}(?:your|the|what|larkspur'?s?)\W+(?:\w+\W+){{0,3}}?"
        rf"(?:{_INSTRUCTIONS}|told\s+you|says?|configured)",
    ),
    _rule(
        "regardless_of_rules",
        "prompt_injection",
        1.0,
        r"\b(?:regardless\s+of|whatever|no\s+matter\s+what|despite)\s+(?:the\s+|your\s+|any\s+)?"
        r"(?:\w+\s+)?(?:polic(?:y|ies)|rules|guidelines|instructions|approval|limits?)",
    ),
    _rule(
        "obey_me",
        "prompt_injection",
        1.0,
        r"\b(?:do\s+(?:exactly\s+)?(?:what|as)\s+i\s+(?:say|tell\s+you)|comply\s+with\s+(?:only\s+)?"
        r"my|i'?m\s+your\s+(?:boss|master|owner|operator)|i\s+(?:order|command)\s+you|"
        r"you\s+(?:must|will)\s+(?:now\s+)?(?:obey|comply))",
    ),
    _rule(
        "who_configured_you",
        "prompt_injection",
        1.0,
        r"\bwhat\s+(?:exactly\s+)?(?:did|do|have)\s+(?:your\s+)?(?:developers|creators|"
        r"engineers|makers|larkspur|they|the\s+company)\s+(?:tell|told|instruct(?:ed)?|"
        r"program(?:med)?|configure[d]?)\s+you",
    ),
    _rule(
        "dump_first_words",
        "prompt_injection",
        1.0,
        r"\b(?:output|print|repeat|show|give|quote)\b[^.!?\n]{0,20}?\b(?:first|last)\s+\d+\s+"
        r"(?:words|lines|characters|tokens)",
    ),
    _rule(
        "verbatim_dump",
        "prompt_injection",
        0.7,
        r"\b(?:word\s+for\s+word|verbatim|anything\s+hidden|hidden\s+(?:text|parts?|content)|"
        r"first\s+\d+\s+(?:words|lines|characters|tokens))\b",
    ),
    _rule(
        "reveal_hidden_rules",
        "prompt_injection",
        1.0,
        r"\b(?:show|tell|give|print|reveal|share|list|quote)\b[^.!?\n]{0,30}?\b(?:hidden|secret|"
        r"internal|confidential)\s+(?:\w+\s+)?(?:rules|logic|criteria|instructions|prompt)\b"
        r"|\b(?:print|show|output|dump)\b[^.!?\n]{0,30}?<\s*context\s*>",
    ),
    _rule(
        "system_override_phrase",
        "prompt_injection",
        1.0,
        r"\b(?:system|admin|security|developer|emergency)\s+override\b|\boverride\s+code\b",
    ),
    _rule(
        "controls_disabled",
        "prompt_injection",
        1.0,
        r"\b(?:turned|switched|shut)\s+off\s+(?:the\s+)?(?:approvals?|checks|limits|reviews?)\b|"
        r"\b(?:approvals?|safety\s+checks|checks|limits|guardrails)\s+(?:are|is|have\s+been)\s+"
        r"(?:off|disabled|suspended|lifted|paused)\b",
    ),
    _rule(
        "can_do_anything",
        "jailbreak",
        0.7,
        r"\b(?:can|could|will|able\s+to)\s+do\s+anything\b|\b(?:hates|ignores|breaks|"
        r"doesn'?t\s+follow|has\s+no)\s+(?:the\s+)?rules\b",
    ),
    _rule(
        "roleplay_setup",
        "jailbreak",
        0.5,
        r"\b(?:let'?s\s+)?role-?play\b|\bpretend\s+(?:that\s+)?(?:there\s+(?:are|is)|you)\b|"
        r"\bas\s+an\s+ai\s+(?:with|without|that)\b|\bmaintenance\s+mode\b",
    ),
    _rule(
        "authority_said_ok",
        "prompt_injection",
        0.5,
        r"\b(?:manager|supervisor|boss|admin|ceo|finance)\s+(?:said|says|told\s+me|agreed)\b|"
        r"\balready\s+(?:been\s+)?approved\b|\bi\s+am\s+the\s+(?:ceo|owner|founder)\b",
    ),
    _rule(
        "deceive_reviewer",
        "prompt_injection",
        1.0,
        r"\btell\s+(?:the\s+)?(?:reviewer|manager|approver|supervisor)\s+(?:that\s+)?"
        r"(?:it|the\s+refund|this)\s+(?:was|is|has\s+been)\s+(?:already\s+)?approved",
    ),
    _rule(
        "forced_label",
        "prompt_injection",
        0.6,
        "\\b(?:reply|respond|answer|say|output)\\s+(?:only\\s+)?with\\s+[\"'\u201c\u2018]",
    ),
    _rule(
        "covert_action",
        "prompt_injection",
        0.6,
        r"\b(?:quietly|secretly|silently|discreetly|covertly)\s+(?:issue|process|approve|"
        r"refund|release|do)\b",
    ),
    # --- concepts: a neutralising word and a control it targets, in one clause -------------
    _rule(
        "neutralise_control",
        "prompt_injection",
        1.0,
        rf"{_NOT_REPORTED}\b{_NEUTRALISE}\b[^.!?\n;]{{0,50}}?\b{_CONTROL}\b|"
        rf"\b{_CONTROL}\b[^.!?\n;]{{0,30}}?\b{_NEUTRALISED}\b",
    ),
    _rule(
        "recite_instructions",
        "prompt_injection",
        1.0,
        r"\b(?:repeat|recite|paste|list|quote|print|show|reveal|share|read\s+out|spell\s+out)\b"
        r"[^.!?\n]{0,40}?\b(?:your\s+(?:\w+\s+)?(?:instructions|prompt|rules|directives)|"
        r"(?:prompt|rules|instructions|text)\s+(?:you\s+(?:received|were\s+given|got)|"
        r"that\s+(?:controls?|governs?)\s+you))",
    ),
    _rule(
        "self_approval",
        "prompt_injection",
        1.0,
        r"\b(?:approve|authori[sz]e)\s+(?:it|this|them|the\s+refund)?\s*(?:yourself|your\s+own)\b|"
        r"\byou\s+have\s+(?:the\s+)?(?:authority|permission|clearance)\s+(?:now|to\s+approve)",
    ),
    _rule(
        "persona_swap",
        "jailbreak",
        0.7,
        r"\b(?:be|become|act\s+as|behave\s+as|operating\s+as|you\s+are\s+now)\s+(?:a\s+|an\s+)?"
        r"(?:different|new|other|alternate)\s+(?:assistant|ai|bot|version|persona)|"
        r"\b(?:operating|running)\s+as\s+\w+\s+with\s+full\s+authority|"
        r"\b(?:doesn'?t|does\s+not|don'?t)\s+care\s+about\s+(?:the\s+)?(?:policies|rules)",
    ),
    # --- other languages: "ignore (all) previous instructions" -----------------------------
    _rule(
        "override_es",
        "prompt_injection",
        1.0,
        r"\bignora\s+(?:todas\s+)?las\s+instrucciones\s+(?:anteriores|previas)",
    ),
    _rule(
        "override_pt",
        "prompt_injection",
        1.0,
        r"\bignore\s+(?:todas\s+)?as\s+instru[çc](?:õ|o)es\s+anteriores",
    ),
    _rule(
        "override_de",
        "prompt_injection",
        1.0,
        r"\bignorier(?:e|en\s+sie)\s+(?:alle\s+)?(?:vorherigen|bisherigen|obigen)\s+"
        r"anweisungen",
    ),
    _rule(
        "override_fr",
        "prompt_injection",
        1.0,
        r"\bignore[zr]?\s+(?:toutes\s+)?les\s+instructions\s+pr[ée]c[ée]dentes",
    ),
    _rule(
        "override_it",
        "prompt_injection",
        1.0,
        r"\bignora\s+(?:tutte\s+)?le\s+istruzioni\s+precedenti",
    ),
)

# ------------------------------------------------------------------------------ normalising

_INVISIBLE = dict.fromkeys(
    [
        *range(0x200B, 0x2010),
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2065),
        *range(0x2066, 0x206A),
        0xFEFF,
        0x00AD,
        0x180E,
    ],
)
_HOMOGLYPHS = str.maketrans(
    {  # Cyrillic and Greek look-alikes of Latin letters
        "\u0430": "a",
        "\u0435": "e",
        "\u043e": "o",
        "\u0440": "p",
        "\u0441": "c",
        "\u0443": "y",
        "\u0445": "x",
        "\u0456": "i",
        "\u0458": "j",
        "\u0455": "s",
        "\u0501": "d",
        "\u0261": "g",
        "\u04bb": "h",
        "\u04cf": "l",
        "\u0578": "n",
        "\u057d": "u",
        "\u0410": "A",
        "\u0412": "B",
        "\u0415": "E",
        "\u041a": "K",
        "\u041c": "M",
        "\u041d": "H",
        "\u041e": "O",
        "\u0420": "P",
        "\u0421": "C",
        "\u0422": "T",
        "\u0425": "X",
        "\u0406": "I",
        "\u03b1": "a",
        "\u03bf": "o",
        "\u03b9": "i",
        "\u03b5": "e",
        "\u03bd": "v",
        "\u03ba": "k",
        "\u03c4": "t",
        "\u03c1": "p",
    }
)
_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "@": "a",
        "$": "s",
        "|": "l",
        "!": "i",
    }
)
_SPACED = re.compile(r"\b[a-z](?:[ .\-_*][a-z]){3,}\b")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}")
_TAGS = re.compile("[\U000e0000-\U000e007f]+")
_WHITESPACE = re.compile(r"[ \t\r\f\v]+")


def _decode_tags(text: str) -> tuple[str, bool]:
    """Turn Unicode tag characters (invisible "ASCII smuggling") into the ASCII they hide."""
    found = False

    def visible(match: re.Match[str]) -> str:
        nonlocal found
        found = True
        return "".join(chr(ord(ch) - 0xE0000) for ch in match.group())

    return _TAGS.sub(visible, text), found


def _fold(text: str) -> str:
    """NFKC, invisible characters removed, look-alikes folded, lower-case."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_HOMOGLYPHS)
    return text.lower()


def _collapse(text: str) -> str:
    return _WHITESPACE.sub(" ", text)


def normalise(text: str) -> str:
    """NFKC, invisible characters removed, look-alikes folded, lower-case, spaces collapsed."""
    return _collapse(_fold(text))


def _join_spaced(text: str) -> str:
    """Join letters spelled out one by one ("i g n o r e" -> "ignore"); wider gaps stay."""
    return _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group()), text)


def _decoded_blobs(text: str) -> Iterable[str]:
    for blob in _BASE64.findall(text):
        try:
            raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
            decoded = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue
        if decoded.isprintable() and sum(ch.isalpha() for ch in decoded) > len(decoded) // 2:
            yield normalise(decoded)


def variants(text: str) -> list[str]:
    """The texts the rules run on: normalised, leet-folded, de-spaced, decoded base64."""
    folded = _fold(text)
    base = _collapse(folded)
    views = [base]
    for view in (base.translate(_LEET), _collapse(_join_spaced(folded)), " ".join(base.split())):
        if view not in views:
            views.append(view)
    views.extend(_decoded_blobs(text))
    return views


# ------------------------------------------------------------------------------ detecting


def detect_injection(text: str, rules: Iterable[Rule] = RULES) -> InjectionVerdict:
    """Score `text` against the rules (each rule counts once, whichever view it matched).

    Args:
        text: the user's message (or any untrusted text).
        rules: the rule set; the module's `RULES` by default.
    """
    decoded, smuggled = _decode_tags(text)
    views = variants(decoded)
    matched: dict[str, Rule] = {}
    for rule in rules:
        if any(rule.pattern.search(view) for view in views):
            matched[rule.name] = rule
    score = sum(rule.weight for rule in matched.values())
    names = sorted(matched)
    if smuggled:
        score += 1.0
        names.append("hidden_tag_characters")
    weights: dict[Category, float] = {"prompt_injection": 0.0, "jailbreak": 0.0}
    for rule in matched.values():
        weights[rule.category] += rule.weight
    category: Category | None = None
    if score > 0:
        category = (
            "jailbreak"
            if weights["jailbreak"] > weights["prompt_injection"]
            else ("prompt_injection")
        )
    return InjectionVerdict(score=round(score, 3), rules=tuple(names), category=category)


__all__ = ["RULES", "InjectionVerdict", "Rule", "detect_injection", "normalise", "variants"]
