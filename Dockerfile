# textlstm image: the library, the admin CLI and the worker (ENTRYPOINT textlstm-admin).
#
# CPU torch by default. For a CUDA build pass the wheel index of your CUDA version, e.g.
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 -t textlstm-cuda .
# (docker-compose.yml's worker-gpu service does this). No secret is baked in: URLs and passwords
# come from the environment at run time.
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TEXTLSTM_MODEL_CACHE_DIR=/cache/bundles
WORKDIR /app

# torch first, from the chosen index: the project's own `torch>=2.3` is then already satisfied.
RUN pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"
COPY pyproject.toml alembic.ini README.md* ./
COPY textlstm ./textlstm
COPY worker ./worker
COPY migrations ./migrations
# Editable install: `textlstm-admin db upgrade` finds migrations/ next to the package.
RUN pip install -e . \
    && useradd --create-home --uid 10001 textlstm \
    && mkdir -p /cache/bundles \
    && chown -R textlstm /cache
USER textlstm
# The worker's Prometheus endpoint when TEXTLSTM_METRICS_PORT=9100 (docker-compose.yml).
EXPOSE 9100

ENTRYPOINT ["textlstm-admin"]
CMD ["--help"]
