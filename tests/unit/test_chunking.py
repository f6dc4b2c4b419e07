from __future__ import annotations

import pytest

from core.knowledge.chunking import TITLE_SEPARATOR as SEP
from core.knowledge.chunking import Chunk, chunk_document

DOC = """\
Intro before any heading.

# Refund Policy

Refunds are issued within 30 days of purchase.

## Eligibility

Only unused items qualify.

### Digital goods

Downloads cannot be refunded.

## Empty section

## Process
Contact support with the order id.
"""


def test_ids_are_stem_and_counter_in_document_order() -> None:
    chunks = chunk_document("policies/refund-policy.md", DOC)
    assert [c.id for c in chunks] == [f"refund-policy#{n}" for n in range(len(chunks))]
    assert all(c.source == "policies/refund-policy.md" for c in chunks)


def test_titles_carry_document_title_and_sections() -> None:
    chunks = chunk_document("refund-policy.md", DOC)
    by_text = {c.text: c.title for c in chunks}
    assert by_text["Intro before any heading."] == "Refund Policy"
    assert by_text["Refunds are issued within 30 days of purchase."] == "Refund Policy"
    assert by_text["Only unused items qualify."] == f"Refund Policy{SEP}Eligibility"
    assert (
        by_text["Downloads cannot be refunded."]
        == f"Refund Policy{SEP}Eligibility{SEP}Digital goods"
    )
    assert by_text["Contact support with the order id."] == f"Refund Policy{SEP}Process"


def test_headings_are_not_in_text_and_empty_sections_are_skipped() -> None:
    chunks = chunk_document("refund-policy.md", DOC)
    assert len(chunks) == 5
    assert all(c.text.strip() == c.text and c.text for c in chunks)
    assert not any(c.text.startswith("#") for c in chunks)
    assert not any("Empty section" in c.title for c in chunks)


def test_no_heading_uses_file_stem() -> None:
    chunks = chunk_document("notes/shipping-faq.txt", "Parcels ship within two days.\n")
    assert chunks == [
        Chunk(
            "shipping-faq#0",
            "notes/shipping-faq.txt",
            "shipping-faq",
            "Parcels ship within two days.",
        )
    ]


def test_long_sections_are_split_under_max_chars_with_stable_ids() -> None:
    paragraphs = "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(12))
    text = f"# Big\n\n## Part\n\n{paragraphs}\n"
    first = chunk_document("big.md", text, max_chars=300, overlap=50)
    second = chunk_document("big.md", text, max_chars=300, overlap=50)
    assert len(first) > 5
    assert all(len(c.text) <= 300 for c in first)
    assert all(c.title == f"Big{SEP}Part" for c in first)
    assert first == second


def test_blank_document_has_no_chunks() -> None:
    assert chunk_document("empty.md", "  \n\n \t\n") == []
    assert chunk_document("only-headings.md", "# Title\n\n## Section\n") == []


def test_invalid_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_document("a.md", "x", max_chars=100, overlap=100)
    with pytest.raises(ValueError, match="max_chars"):
        chunk_document("a.md", "x", max_chars=0, overlap=0)


def test_title_separator_is_the_single_angle_quote() -> None:
    assert SEP == " \u203a "
