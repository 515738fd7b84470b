"""The Celery worker: the app (`worker.app`), the micro-batching consumer strategy
(`worker.strategy`), the per-process runtime (`worker.runtime`) and the thin task
(`worker.tasks`). Run it with `textlstm-admin worker` (README.md, "The worker")."""
