"""Alembic migration scripts, installed as the package `textlstm_migrations`.

The directory keeps its name in the source tree (`alembic.ini` points at it); pyproject.toml maps it
to this import name so a wheel carries the scripts and `textlstm.store.migrate` finds them as a
package resource, from any working directory. Nothing imports this package's modules: Alembic
loads `env.py` and `versions/*.py` itself.
"""
