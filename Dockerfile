# cxstream: one image for every role (worker, sink, simulator, topics job).
FROM python:3.11-slim-bookworm AS deps

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY pipeline/__init__.py pipeline/__init__.py
COPY agents/__init__.py agents/__init__.py
RUN pip install .

# The stream core compiled with mypyc. gcc and mypy stay in this stage; the
# image below takes only the extension modules and their manifest.
FROM deps AS native
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN pip install '.[native]'
COPY pipeline pipeline
RUN pip install --no-deps -e . && cxstream native build

FROM deps
COPY pipeline pipeline
COPY agents agents
COPY schemas schemas
# Built from the same pipeline/ sources, so `cxstream native status` reads
# "compiled"; an edited source would make the core run interpreted, not stale.
COPY --from=native /app/pipeline/core/*.so /app/pipeline/core/_native.json pipeline/core/
# Editable install: the contract code reads the Avro schemas from /app/schemas
# (the repository layout), which a site-packages install would not carry.
RUN pip install --no-deps -e . \
    && CXSTREAM_CORE=compiled python -c "import pipeline.core.processor" \
    && useradd --system --uid 10001 --home-dir /app cxstream \
    && mkdir -p /app/var && chown cxstream /app/var

USER cxstream
# /metrics of `cxstream worker` (6066) and `cxstream sink` (6067).
EXPOSE 6066 6067
ENTRYPOINT ["cxstream"]
CMD ["worker"]
