"""Every bound a message's values must respect, in one place, with where each one comes from.

A value that passes validation (the producer's `build_messages`, the worker's `parse_message`)
is stored on both databases and read back by every admin command; a value past a bound is a
ValidationError naming the field. Most bounds are what a column of `textlstm/store/models.py`
holds. They are plain numbers here, not read from the SQLAlchemy tables, because this module is
imported by the producer, which needs no database driver; `tests/client/test_limits.py` checks
each of them against the migrated schema of PostgreSQL and SQLite, so a migration that narrows a
column fails the tests instead of truncating data.

README.md ("The message, for producers in other languages") lists them for foreign producers.
"""

from __future__ import annotations

from datetime import UTC, datetime

#: The largest value of an `Integer` column (32-bit signed on PostgreSQL): jobs.expected_count,
#: predictions.item_index, model_versions.version. A message's total, its item indices and a
#: model version must fit, and so must the `max_job_items` setting that bounds the total.
INT32_MAX = 2**31 - 1

#: model_versions.name and model_aliases.name are String(64).
MODEL_NAME_CHARS = 64
#: model_aliases.alias is String(32).
MODEL_ALIAS_CHARS = 32
#: model_versions.version is an Integer: `name@2147483647` is the highest version.
MODEL_VERSION_MAX = INT32_MAX
#: ASCII digits of the largest version (`name@<1..10 digits>`).
MODEL_VERSION_DIGITS = len(str(MODEL_VERSION_MAX))
#: jobs.model_ref is String(100). The longest reference the name and alias rules allow is
#: 64 + 1 + 32 = 97 characters, so this bound is only a guard against rules drifting apart
#: from the column (it is checked first anyway, before a long string is parsed or cached).
MODEL_REF_CHARS = 100

#: predictions.external_id is String(256): an item's id, a string or an integer whose decimal
#: form (sign included) is at most this long.
EXTERNAL_ID_CHARS = 256
#: Integers accepted as ids: exactly those whose `str()` has at most EXTERNAL_ID_CHARS
#: characters. Checked by comparison, because `str()` of an integer over 4,300 digits raises
#: ValueError (Python's int_max_str_digits) instead of producing a string to measure.
EXTERNAL_ID_INT_MIN = -(10 ** (EXTERNAL_ID_CHARS - 1)) + 1
EXTERNAL_ID_INT_MAX = 10**EXTERNAL_ID_CHARS - 1

#: Policy, not storage (jobs.metadata is JSONB / JSON text): metadata is repeated in every
#: message of a job, so it stays small. Measured as compact JSON (no spaces) in UTF-8 with
#: non-ASCII characters unescaped, which any JSON library can reproduce.
METADATA_BYTES = 16_384
#: Most nested levels of objects and arrays in metadata (`{}` is depth 1). Deeper documents
#: passed the size rule and then hit RecursionError in the batch write (~950 levels), in
#: json.dumps/loads on the way to and from the database, or in `jobs show --json`; 32 is far
#: from every such limit and far above what producer metadata needs.
METADATA_DEPTH = 32

#: `submitted_at`, `deadline` and the Celery `expires` header: after normalising the offset to
#: UTC, TIMESTAMP_MIN <= t < TIMESTAMP_MAX. Both databases store a wider range, but Python's
#: datetime ends at 9999-12-31: a year-9999 time with a negative offset is year 10000 in UTC,
#: which PostgreSQL stores and psycopg then cannot read back ("timestamp too large"), failing
#: `jobs list` for every job. The year of margin at the top keeps arithmetic (a deadline plus
#: an interval, a conversion to local time) inside datetime's range; nothing the service does
#: needs times before the Unix epoch.
TIMESTAMP_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TIMESTAMP_MAX = datetime(9999, 1, 1, tzinfo=UTC)

#: Upper bound of the `max_job_items` setting (a job's total is an Integer column).
JOB_ITEMS_MAX = INT32_MAX

#: predictions.label is String(200): a registered model's labels must fit (checked when a
#: bundle is registered, textlstm/store/registry.py).
LABEL_CHARS = 200
