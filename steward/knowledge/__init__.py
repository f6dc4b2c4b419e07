"""Knowledge layer: chunk policy documents, embed them, index them, retrieve them."""

from steward.knowledge.chunking import Chunk, chunk_document
from steward.knowledge.embeddings import (
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    make_embedder,
)
from steward.knowledge.index import (
    DocumentEntry,
    IndexCorrupt,
    IndexMismatch,
    IndexNotFound,
    KnowledgeIndex,
    KnowledgeIndexError,
)
from steward.knowledge.ingest import IngestError, IngestReport, ingest
from steward.knowledge.retriever import FaissRetriever, load_retriever
from steward.knowledge.types import RetrievedChunk, Retriever

__all__ = [
    "Chunk",
    "DocumentEntry",
    "Embedder",
    "FaissRetriever",
    "IndexCorrupt",
    "IndexMismatch",
    "IndexNotFound",
    "IngestError",
    "IngestReport",
    "KnowledgeIndex",
    "KnowledgeIndexError",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "RetrievedChunk",
    "Retriever",
    "chunk_document",
    "ingest",
    "load_retriever",
    "make_embedder",
]
