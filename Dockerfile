# syntax=docker/dockerfile:1.7
# Steward service image: build a venv in one stage, run as a non-root user under tini.

ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU-only torch first, so resolving its dependants never pulls a CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY graph ./graph
COPY nodes ./nodes
COPY server ./server
COPY evals ./evals
COPY mock_llm ./mock_llm
COPY steward ./steward
RUN pip install . \
    && python -m core.knowledge.onnx_export

FROM ${PYTHON_IMAGE} AS runtime
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 65532 --user-group --create-home --home-dir /var/lib/steward steward
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=65532:65532 data ./data
COPY --chown=65532:65532 langgraph.json ./
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STEWARD_HOME=/var/lib/steward \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    LANGGRAPH_STRICT_MSGPACK=true
USER 65532
# The sample knowledge base is indexed at build time; mount your own and re-run `steward ingest`.
RUN steward ingest --no-progress data/policies
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["tini", "--", "steward"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
