# textlstm image: the library, the admin CLI and the worker.
# CPU torch by default; build with --build-arg TORCH_SPEC="torch==2.13.0" --build-arg
# TORCH_INDEX=https://download.pytorch.org/whl/cu126 (or similar) for a CUDA build.
FROM python:3.11-slim

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX="https://download.pytorch.org/whl/cpu"

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

RUN pip install --index-url "$TORCH_INDEX" "$TORCH_SPEC"
COPY pyproject.toml README.md alembic.ini ./
COPY textlstm ./textlstm
COPY worker ./worker
COPY migrations ./migrations
RUN pip install -e . && useradd --create-home textlstm
USER textlstm

ENTRYPOINT ["textlstm-admin"]
CMD ["--help"]
