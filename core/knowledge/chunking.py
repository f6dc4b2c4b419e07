"""Split Markdown / plain-text policy documents into citeable chunks."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3")]
TITLE_SEPARATOR = " \u203a "  # single right-pointing angle quotation mark


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document, small enough to embed and to quote."""

    id: str
    """`<file stem>#<n>`, n counting from 0 in document order."""
    source: str
    """Document path relative to the corpus root (POSIX separators)."""
    title: str
    """Document `#` title, then the `##` / `###` headings, joined by `TITLE_SEPARATOR`."""
    text: str

    def to_dict(self) -> dict[str, str]:
        """Return the chunk as a plain JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chunk:
        """Build a chunk from `to_dict` output."""
        return cls(
            id=str(data["id"]),
            source=str(data["source"]),
            title=str(data["title"]),
            text=str(data["text"]),
        )

    def embedding_text(self) -> str:
        """Text that is embedded for this chunk: its title, a blank line, then its text."""
        return f"{self.title}\n\n{self.text}"


def document_stem(source: str) -> str:
    """Return the stem used in chunk ids for `source` (file name without its suffix)."""
    return PurePosixPath(source.replace("\\", "/")).stem


def chunk_document(
    source: str, text: str, *, max_chars: int = 900, overlap: int = 120
) -> list[Chunk]:
    """Split one document into chunks along `#`/`##`/`###` sections, then by size.

    Args:
        source: Document path relative to the corpus root; its stem prefixes chunk ids.
        text: The document's text (Markdown or plain text).
        max_chars: Maximum characters per chunk.
        overlap: Characters shared by consecutive chunks of one section.

    Returns:
        Non-empty chunks in document order; ids are stable for unchanged text.

    Raises:
        ValueError: If `max_chars` is not positive or `overlap` is not in [0, max_chars).
    """
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    if not 0 <= overlap < max_chars:
        raise ValueError("overlap must be >= 0 and smaller than max_chars")

    stem = document_stem(source)
    sections = MarkdownHeaderTextSplitter(_HEADERS, strip_headers=True).split_text(text)
    doc_title = next((str(s.metadata["h1"]) for s in sections if s.metadata.get("h1")), stem)
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=max_chars, chunk_overlap=overlap, strip_whitespace=True
    )

    chunks: list[Chunk] = []
    for section in sections:
        meta = section.metadata
        title = str(meta.get("h1") or doc_title)
        headings = [str(meta[key]) for key in ("h2", "h3") if meta.get(key)]
        if headings:
            title = TITLE_SEPARATOR.join([title, *headings])
        # The header splitter joins paragraphs with a Markdown hard break ("  \n");
        # restore blank lines so the size splitter can cut at paragraph boundaries.
        body = section.page_content.replace("  \n", "\n\n")
        for piece in splitter.split_text(body):
            piece = piece.strip()
            if piece:
                chunks.append(Chunk(f"{stem}#{len(chunks)}", source, title, piece))
    return chunks


__all__ = ["Chunk", "chunk_document", "document_stem"]
