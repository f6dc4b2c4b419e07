"""The FAISS-backed `Retriever` used by the graph."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from core.knowledge.batching import Batcher
from core.knowledge.embeddings import CachedEmbedder, Embedder, make_embedder
from core.knowledge.index import KnowledgeIndex
from core.knowledge.types import RetrievedChunk

if TYPE_CHECKING:
    from core.settings import Settings


class FaissRetriever:
    """Embeds the query and searches the knowledge index, off the event loop.

    Only chunks scoring at least `min_score` (cosine similarity, the relevance floor) are
    returned: what is below it is never shown to the model nor citable, so a question the
    policies do not cover retrieves nothing. Concurrent searches share one embedding pass
    (`core.knowledge.batching`).
    """

    def __init__(
        self, index: KnowledgeIndex, embedder: Embedder, *, min_score: float = -1.0
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.min_score = min_score
        self._batcher: Batcher[tuple[str, int], list[RetrievedChunk]] = Batcher(self._search_many)

    def search_sync(self, query: str, *, k: int) -> list[RetrievedChunk]:
        """Blocking search: return up to `k` chunks at or above the floor, best first."""
        if k <= 0 or not query.strip() or len(self.index) == 0:
            return []
        return self._search_many([(query, k)])[0]

    def _search_many(self, queries: list[tuple[str, int]]) -> list[list[RetrievedChunk]]:
        """Blocking: embed every query in one pass, then search each."""
        results: list[list[RetrievedChunk]] = [[] for _ in queries]
        todo = [i for i, (q, k) in enumerate(queries) if k > 0 and q.strip()]
        if not todo or len(self.index) == 0:
            return results
        vectors = self.embedder.embed_queries([queries[i][0] for i in todo])
        for i, vector in zip(todo, vectors, strict=True):
            results[i] = [
                RetrievedChunk(
                    id=chunk.id,
                    source=chunk.source,
                    title=chunk.title,
                    text=chunk.text,
                    score=float(score),
                )
                for chunk, score in self.index.search(vector, queries[i][1])
                if score >= self.min_score
            ]
        return results

    async def search(self, query: str, *, k: int) -> list[RetrievedChunk]:
        """Return up to `k` chunks at or above the floor, best first, without blocking."""
        return await self._batcher.submit((query, k))

    async def warmup(self) -> None:
        """Load the embedding model now (in a thread) instead of on the first query."""
        await asyncio.to_thread(self.embedder.embed_query, "warm-up")


def load_retriever(settings: Settings) -> FaissRetriever:
    """Load the index from `settings.index_dir` with the configured embedder and floor.

    Query vectors go through a `CachedEmbedder`, which the input filter's injection classifier
    shares (graph.deps), so the turn's message is embedded once.

    Raises:
        IndexNotFound: If `steward ingest` has not been run.
        IndexMismatch: If the index was built with a different embedding model.
    """
    embedder = make_embedder(settings)
    index = KnowledgeIndex.load(settings.index_dir, embedder=embedder)
    return FaissRetriever(index, CachedEmbedder(embedder), min_score=settings.retrieval_min_score)


__all__ = ["FaissRetriever", "load_retriever"]
