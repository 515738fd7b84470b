"""What the decode boundary (worker/envelope.py) and the counting pop cost per message.

    python bench/boundary.py          # writes bench/results/boundary.{md,json}

Per raw one-text entry as bench/pipeline.py's raw mode writes it:
- parse: the old path (kombu's JSON loads of the entry, then the standard library's loads of
  the base64-decoded body, which the strategy did) against `inspect` (the whole envelope
  checked, the body decoded once and handed to the strategy). Both are followed by kombu's own
  Message construction in the worker, the same either way and not timed;
- pop: worker/transport.py's script taking --n entries 64 at a time from a real Redis
  (--redis-url; the database is emptied), the reply parsed by redis-py's Python parser and by
  hiredis.
Median of --repeats runs.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pipeline import raw_message  # noqa: E402
from worker.envelope import Accepted, inspect  # noqa: E402


def old_path(raw: bytes) -> object:
    from kombu.utils.json import loads

    payload = loads(raw.decode())
    payload["properties"]["delivery_tag"]  # noqa: B018 - what the old transport checked
    return json.loads(base64.b64decode(payload["body"]))


def pop_costs(url: str, entries: list[bytes], repeats: int) -> dict[str, float]:
    """µs per entry for the pop script to take every entry, 64 a call, per reply parser."""
    import redis
    from redis._parsers import _HiredisParser, _RESP2Parser

    from worker.transport import POP_AND_RECORD

    out = {}
    for name, parser in (("pop, Python parser", _RESP2Parser), ("pop, hiredis", _HiredisParser)):
        client = redis.Redis.from_url(url, parser_class=parser)
        keys = ["bench-q", "bench-unacked", "bench-index", "bench-counts", "bench-dead"]
        sha = client.script_load(POP_AND_RECORD)
        runs = []
        for _ in range(repeats):
            client.flushdb()
            for i in range(0, len(entries), 1000):
                client.lpush("bench-q", *entries[i : i + 1000])
            t = time.perf_counter()
            while client.evalsha(sha, len(keys), *keys, time.time(), 64, 65536, 3, 100):
                pass
            runs.append((time.perf_counter() - t) / len(entries) * 1e6)
        client.flushdb()
        client.close()
        out[name] = round(statistics.median(runs), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "boundary")
    args = ap.parse_args()
    text = "Wall St. Bears Claw Back Into the Black (Reuters) Reuters - Short-sellers, Wall Street"
    entries = [raw_message(str(uuid.uuid4()), 0, 1, text, "bench") for _ in range(args.n)]
    assert all(isinstance(inspect(e), Accepted) for e in entries[:10])
    result: dict[str, float] = {}
    for name, fn in (("old: kombu loads + body loads", old_path), ("inspect", inspect)):
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for e in entries:
                fn(e)
            runs.append((time.perf_counter() - t) / args.n * 1e6)
        result[name] = round(statistics.median(runs), 2)
    old, new = result.values()
    result.update(pop_costs(args.redis_url, entries, args.repeats))
    lines = [
        "# The decode boundary's cost per message",
        "",
        f"`python bench/boundary.py` ({args.n:,} one-text entries of {len(entries[0])} bytes, "
        f"median of {args.repeats} runs, one core).",
        "",
        "| path | µs per entry |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in result.items()),
        "",
        f"The boundary's parse costs {new - old:+.2f} µs per message against the old parse "
        f"({new / old:.2f}x).",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
