"""A bare kombu consumer for tests/worker/test_transport.py, run as a subprocess and killed.

It writes each message's id to a file *before* acking it, so after any kill every id is in the
file, in the queue or in the `unacked` hash (the invariant the test checks). Usage:
python -m tests.worker.killable_consumer URL QUEUE OUTFILE [TRANSPORT [OPTIONS_JSON]]
(the unacked hash and index are named after QUEUE: tests/fixtures/transport.py; OPTIONS_JSON,
more transport options, e.g. a Sentinel set's master_name).
"""

from __future__ import annotations

import json
import sys
import time

from kombu import Consumer, Queue


def main() -> None:
    url, queue, outfile = sys.argv[1:4]
    transport = sys.argv[4] if len(sys.argv) > 4 else "worker.transport:Transport"
    options = json.loads(sys.argv[5]) if len(sys.argv) > 5 else None
    from tests.fixtures.transport import connect

    with open(outfile, "a", buffering=1) as out, connect(url, queue, transport, options) as conn:
        channel = conn.channel()
        channel.basic_qos(0, 64, False)

        def on_message(body: list, message: object) -> None:
            # Half a millisecond of "work" per message, as a forward pass would take: on a
            # fast, idle machine the flow otherwise ends before the test can kill it 3 times.
            time.sleep(0.0005)
            out.write(f"{body[0][0]['i']}\n")  # line-buffered: in the file before the ack
            message.ack()  # type: ignore[attr-defined]

        with Consumer(channel, [Queue(queue)], callbacks=[on_message], accept=["json"]):
            while True:
                try:
                    conn.drain_events(timeout=1)
                except TimeoutError:
                    pass


if __name__ == "__main__":
    main()
