# textlstm image: the library, the admin CLI and the worker (ENTRYPOINT textlstm-admin), installed
# from the wheel that the first stage builds: no source tree in the image.
#
# CPU torch by default. For a CUDA build pass the wheel index of your CUDA version, e.g.
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 -t textlstm-cuda .
# (docker-compose.yml's worker-gpu service does this). EXTRAS picks the extras installed: the
# default, worker,api, runs the worker, predict and evaluate, and the HTTP gateway
# (`serve-api`, which never imports torch); --build-arg EXTRAS=train,api adds
# `textlstm-admin train` (train includes worker).
# No secret is baked in: URLs and passwords come from the environment at run time.
FROM python:3.11-slim AS build
WORKDIR /src
COPY constraints.txt ./
RUN pip install --no-cache-dir -c constraints.txt build setuptools
COPY pyproject.toml README.md* ./
COPY textlstm ./textlstm
COPY worker ./worker
COPY migrations ./migrations
# Built without isolation from the pinned setuptools above: the same wheel from the same inputs.
RUN python -m build --wheel --no-isolation --outdir /dist .

FROM python:3.11-slim

# torch's version is pinned in constraints.txt (a test keeps TORCH_SPEC equal to it); the index
# picks its build.
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"
ARG EXTRAS="worker,api"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TEXTLSTM_MODEL_CACHE_DIR=/cache/bundles
WORKDIR /app

# torch first, from the chosen index: the wheel's `torch>=2.3` is then already satisfied.
RUN pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"
COPY constraints.txt /tmp/constraints.txt
COPY --from=build /dist/ /tmp/dist/
# `textlstm-admin db upgrade` finds the migrations inside the installed wheel (textlstm_migrations).
RUN set -e; for whl in /tmp/dist/textlstm-*.whl; do \
        pip install "${whl}[${EXTRAS}]" -c /tmp/constraints.txt; \
    done \
    && rm -rf /tmp/dist /tmp/constraints.txt \
    && useradd --create-home --uid 10001 textlstm \
    && mkdir -p /cache/bundles \
    && chown -R textlstm /cache
USER textlstm
# The worker's Prometheus endpoint when TEXTLSTM_METRICS_PORT=9100 (docker-compose.yml), and
# the gateway's port (`serve-api --port 8000`).
EXPOSE 9100 8000

ENTRYPOINT ["textlstm-admin"]
CMD ["--help"]
