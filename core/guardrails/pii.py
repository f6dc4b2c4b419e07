"""PII and secret detection with redaction, on Presidio's pattern recognizers (offline).

What finds what:
- Presidio (`presidio-analyzer`): `EMAIL_ADDRESS` (regex + TLD check, tldextract's bundled
  suffix list), `PHONE_NUMBER` (Google's `phonenumbers` matcher: international numbers and
  US/UK/DE/IL/IN/CA/BR national formats), `CREDIT_CARD` (13-19 digits, Luhn-checked),
  `IBAN_CODE` (country format + mod-97 checksum), `US_SSN` (formatted `ddd-dd-dddd`; invalid
  areas/groups and published sample numbers are rejected).
- `EMAIL_ADDRESS` also on domains tldextract does not know (our own pattern).
- `SECRET`: the token formats of `detect-secrets`' regex plugins (AWS, GitHub, GitLab, Slack,
  Stripe, OpenAI, SendGrid, Twilio, npm, PyPI, Discord, Telegram, JWT, private-key headers,
  credentials in URLs, ...) as Presidio pattern recognizers, plus ours: Steward keys
  (`stw_...`), LangSmith keys, `sk-...` provider keys, Google API keys, bearer tokens, PEM
  private-key blocks, and a value after "password/PIN/API key/token is|:|=" that looks
  like a secret (has a digit or a symbol, or is 12+ characters).

No NER model is loaded (a blank spaCy pipeline only tokenizes), so names and street addresses
are not detected. Everything loads from installed packages; nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from core.placeholders import PLACEHOLDERS

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

# tldextract (used by Presidio's e-mail recognizer) must not fetch the public suffix list.
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")


MIN_SCORE: dict[str, float] = {"PHONE_NUMBER": 0.4}
"""Per-entity minimum confidence; Presidio scores phone matches 0.4 without NER context."""
DEFAULT_MIN_SCORE = 0.5

_OWN_SECRET_PATTERNS: tuple[tuple[str, str], ...] = (
    ("steward_key", r"\bstw_[0-9a-f]{8}_[A-Za-z0-9_-]{16,}"),
    ("langsmith_key", r"\blsv2_[A-Za-z0-9_]{16,}"),
    ("provider_key", r"\bsk-[A-Za-z0-9_-]{20,}"),
    ("stripe_test_key", r"\b[rs]k_test_[0-9A-Za-z]{16,}"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}"),
    ("bearer_token", r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}"),
    (
        "pem_private_key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
    ),
)

_EMAIL_ANY_TLD = r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b"

_KEYWORD_SECRET = re.compile(
    r"(?i)\b(?:password|passwd|pwd|passcode|pass ?phrase|pin(?: code| number)?|"
    r"api[ _-]?key|secret(?: key)?|access[ _-]?token|auth[ _-]?token|token|cvv|cvc)"
    r"\s*(?:is|was|=|:)\s*[\"']?(?P<value>[^\s\"',;]{3,}[^\s\"',;.!?)\]])"
)


@dataclass(frozen=True, slots=True)
class PiiFinding:
    """One detected entity: its type and character span."""

    entity: str
    start: int
    end: int
    score: float


@dataclass(frozen=True, slots=True)
class Redaction:
    """Text with every finding replaced by its placeholder, and the entity types found."""

    text: str
    entities: tuple[str, ...]
    """Distinct entity types that were redacted, sorted (never the values)."""

    @property
    def changed(self) -> bool:
        """True when anything was redacted."""
        return bool(self.entities)


def _looks_secret(value: str) -> bool:
    return len(value) >= 12 or any(not ch.isalpha() for ch in value)


def _detect_secrets_plugins() -> tuple[Any, ...]:
    """detect-secrets plugins whose patterns are specific token formats (few false positives)."""
    from detect_secrets.plugins.aws import AWSKeyDetector
    from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
    from detect_secrets.plugins.basic_auth import BasicAuthDetector
    from detect_secrets.plugins.discord import DiscordBotTokenDetector
    from detect_secrets.plugins.github_token import GitHubTokenDetector
    from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
    from detect_secrets.plugins.jwt import JwtTokenDetector
    from detect_secrets.plugins.mailchimp import MailchimpDetector
    from detect_secrets.plugins.npm import NpmDetector
    from detect_secrets.plugins.openai import OpenAIDetector
    from detect_secrets.plugins.private_key import PrivateKeyDetector
    from detect_secrets.plugins.pypi_token import PypiTokenDetector
    from detect_secrets.plugins.sendgrid import SendGridDetector
    from detect_secrets.plugins.slack import SlackDetector
    from detect_secrets.plugins.square_oauth import SquareOAuthDetector
    from detect_secrets.plugins.stripe import StripeDetector
    from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
    from detect_secrets.plugins.twilio import TwilioKeyDetector

    return (
        AWSKeyDetector,
        AzureStorageKeyDetector,
        BasicAuthDetector,
        DiscordBotTokenDetector,
        GitHubTokenDetector,
        GitLabTokenDetector,
        JwtTokenDetector,
        MailchimpDetector,
        NpmDetector,
        OpenAIDetector,
        PrivateKeyDetector,
        PypiTokenDetector,
        SendGridDetector,
        SlackDetector,
        SquareOAuthDetector,
        StripeDetector,
        TelegramBotTokenDetector,
        TwilioKeyDetector,
    )


def _secret_recognizers() -> list[Any]:
    """Presidio recognizers for the `SECRET` entity (detect-secrets formats and ours)."""
    from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult

    patterns: list[Pattern] = []
    for detector in _detect_secrets_plugins():
        for i, regex in enumerate(detector.denylist):
            flags = "(?i)" if regex.flags & re.IGNORECASE else ""
            patterns.append(Pattern(f"{detector.__name__}_{i}", flags + regex.pattern, 0.9))
    for name, regex in _OWN_SECRET_PATTERNS:
        patterns.append(Pattern(name, regex, 0.9))
    formats = PatternRecognizer(
        supported_entity="SECRET",
        name="SecretFormatRecognizer",
        patterns=patterns,
        global_regex_flags=re.DOTALL | re.MULTILINE,
    )

    class KeywordSecretRecognizer(EntityRecognizer):
        """A secret-looking value after a keyword such as "password is"."""

        def load(self) -> None:
            """Nothing to load."""

        def analyze(
            self, text: str, entities: list[str], nlp_artifacts: Any = None
        ) -> list[RecognizerResult]:
            """Return the spans of keyword-introduced secret values."""
            return [
                RecognizerResult("SECRET", m.start("value"), m.end("value"), 0.8)
                for m in _KEYWORD_SECRET.finditer(text)
                if _looks_secret(m.group("value"))
            ]

    return [
        formats,
        KeywordSecretRecognizer(supported_entities=["SECRET"], name="KeywordSecretRecognizer"),
    ]


def _email_fallback() -> Any:
    """Addresses on domains tldextract does not know (`.internal`, `.example`, new TLDs)."""
    from presidio_analyzer import Pattern, PatternRecognizer

    return PatternRecognizer(
        supported_entity="EMAIL_ADDRESS",
        name="EmailAnyTldRecognizer",
        patterns=[Pattern("email_any_tld", _EMAIL_ANY_TLD, 0.6)],
    )


def _import_presidio_without_torch() -> None:
    """Import Presidio and spaCy with torch and transformers hidden, where not imported yet.

    They import both whenever they are installed, only to look for GPUs (spaCy's ML layer
    thinc, Presidio's device detector unless `PRESIDIO_DEVICE` is set) and to offer engines we
    do not use; the blank pipeline never needs them, and a serving process would hold torch's
    ~300 MiB for nothing (they are installed to export the embedding model,
    `core.knowledge.onnx_export`). While the imports run, importing either raises
    ImportError, which Presidio and thinc handle; afterwards both import as usual, but thinc
    and Presidio keep believing they are absent for the life of the process (no thinc
    PyTorch layers, no Presidio transformers engines: this module uses neither). Called
    under the analyzer's build lock, before any thread of ours imports torch.
    """
    os.environ.setdefault("PRESIDIO_DEVICE", "cpu")
    if "presidio_analyzer" in sys.modules:
        return
    absent: Any = None  # what the import system reads as "not installed"
    hidden = [name for name in ("torch", "transformers") if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = absent
    try:
        import presidio_analyzer  # noqa: F401
        import spacy  # noqa: F401
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is absent:
                del sys.modules[name]


def build_analyzer() -> AnalyzerEngine:
    """Build a Presidio analyzer with only our recognizers and a blank (tokenizer-only) spaCy.

    Loads in about a second (importing spaCy); call it off the event loop.
    """
    _import_presidio_without_torch()
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    class BlankSpacyNlpEngine(SpacyNlpEngine):
        """spaCy's blank English pipeline: tokens only, no model download."""

        def load(self) -> None:
            """Create the pipeline in memory."""
            self.nlp = {"en": spacy.blank("en")}  # type: ignore[assignment]  # untyped None

    nlp_engine = BlankSpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank_en"}])
    nlp_engine.load()
    registry = RecognizerRegistry(
        recognizers=[
            EmailRecognizer(),
            PhoneRecognizer(),
            CreditCardRecognizer(),
            IbanRecognizer(),
            UsSsnRecognizer(),
            _email_fallback(),
            *_secret_recognizers(),
        ],
        supported_languages=["en"],
    )
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
    analyzer.analyze("warm-up: +1 415 555 0132, a@b.example", language="en")
    return analyzer


_lock = threading.Lock()
_analyzer: AnalyzerEngine | None = None


def get_analyzer() -> AnalyzerEngine:
    """Return the process-wide analyzer, building it on first use (thread-safe)."""
    global _analyzer
    if _analyzer is None:
        with _lock:
            if _analyzer is None:
                _analyzer = build_analyzer()
    return _analyzer


def is_loaded() -> bool:
    """True once the analyzer has been built (building it blocks for about a second)."""
    return _analyzer is not None


def find_pii(text: str) -> list[PiiFinding]:
    """Return the PII and secrets in `text`, overlaps resolved to the longest span."""
    if not text.strip():
        return []
    results = get_analyzer().analyze(text, language="en", entities=list(PLACEHOLDERS))
    found = [
        PiiFinding(r.entity_type, r.start, r.end, r.score)
        for r in results
        if r.score >= MIN_SCORE.get(r.entity_type, DEFAULT_MIN_SCORE)
    ]
    return _without_overlaps(found)


def _without_overlaps(found: Iterable[PiiFinding]) -> list[PiiFinding]:
    kept: list[PiiFinding] = []
    for item in sorted(found, key=lambda f: (-(f.end - f.start), f.start)):
        if all(item.end <= k.start or item.start >= k.end for k in kept):
            kept.append(item)
    return sorted(kept, key=lambda f: f.start)


def redact_text(text: str, *, keep: Collection[str] = (), keep_if_in: str = "") -> Redaction:
    """Replace every PII or secret value in `text` with its placeholder (e.g. `[EMAIL]`).

    Args:
        text: the text to clean.
        keep: values that stay even if detected.
        keep_if_in: values found verbatim in this reference text stay (e.g. the policy
            excerpts of the turn, so a published contact address is not removed).
    """
    if not keep and not keep_if_in:
        return _redact_cached(text)
    return _redact(text, keep, keep_if_in)


@lru_cache(maxsize=4096)
def _redact_cached(text: str) -> Redaction:
    return _redact(text, (), "")


def _redact(text: str, keep: Collection[str], keep_if_in: str) -> Redaction:
    def kept(value: str) -> bool:
        return value in keep or bool(keep_if_in and value in keep_if_in)

    findings = [f for f in find_pii(text) if not kept(text[f.start : f.end])]
    if not findings:
        return Redaction(text, ())
    parts: list[str] = []
    cursor = 0
    for finding in findings:
        parts.append(text[cursor : finding.start])
        parts.append(PLACEHOLDERS[finding.entity])
        cursor = finding.end
    parts.append(text[cursor:])
    return Redaction("".join(parts), tuple(sorted({f.entity for f in findings})))


__all__ = [
    "PLACEHOLDERS",
    "PiiFinding",
    "Redaction",
    "build_analyzer",
    "find_pii",
    "get_analyzer",
    "is_loaded",
    "redact_text",
]
