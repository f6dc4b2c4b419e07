"""Value types shared by the knowledge layer and the graph."""

from __future__ import annotations

from typing import Protocol, TypedDict


class RetrievedChunk(TypedDict):
    """One policy chunk returned by retrieval; `id` is what an answer may cite."""

    id: str
    """Stable chunk id, `<document stem>#<n>`, e.g. `refund-policy#2`."""
    source: str
    """Document path relative to the corpus root, e.g. `refund-policy.md`."""
    title: str
    """Document title (first Markdown heading) plus the section heading."""
    text: str
    score: float
    """Cosine similarity in [-1, 1]; higher is closer."""


class Retriever(Protocol):
    """Anything that can find policy chunks for a query without blocking the event loop."""

    async def search(self, query: str, *, k: int) -> list[RetrievedChunk]:
        """Return up to `k` chunks, best first."""
        ...
