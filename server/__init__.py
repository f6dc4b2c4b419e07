"""The HTTP service (Litestar): LangGraph Server API subset, approval queue, auth."""
