"""The serving use case, free of Celery: micro-batching (pure), the per-process model cache,
and `classify_batch` (predict a micro-batch, store it in one transaction). `worker/` only
adapts broker messages to these."""
