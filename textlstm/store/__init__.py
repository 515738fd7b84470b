"""SQL store: engine, ORM models, queries and the model registry (no torch anywhere here)."""
