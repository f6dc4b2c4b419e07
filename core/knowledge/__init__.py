"""Knowledge layer: chunk policy documents, embed them, index them, retrieve them."""

from core.knowledge.chunking import Chunk, chunk_document
from core.knowledge.embeddings import (
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    make_embedder,
)
from core.knowledge.index import (
    DocumentEntry,
    IndexCorrupt,
    IndexMismatch,
    IndexNotFound,
    KnowledgeIndex,
    KnowledgeIndexError,
)
from core.knowledge.ingest import IngestError, IngestReport, ingest
from core.knowledge.retriever import FaissRetriever, load_retriever
from core.knowledge.types import RetrievedChunk, Retriever

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
