"""Revision scripts (Alembic skips this file when it scans the directory)."""
