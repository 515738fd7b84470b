"""SQL store: engine, ORM models, every SQL query of the project, and the model registry.

One module per concern: `db` (engines, sessions), `models` (the ORM schema), `migrate`
(Alembic), `jobs` (job rows), `predictions` (the save paths), `bulk_insert` (insert-or-ignore,
and the multi-row INSERT PostgreSQL gets), `results` (reading stored rows back), `blobs` and
`model_versions` (the registry's queries), `registry` (its rules: register, resolve, fetch).
Query functions are keyword-only, take a session and never commit: the caller owns the
transaction. Outside this package no module builds SQL (tests/unit/test_boundaries.py checks
it). No torch anywhere here.
"""
