"""The producer side: what an application needs to send jobs and read their results.

Importable with the base install (no torch, no worker package): it publishes by task name and
reads results through `textlstm.store`.

    from textlstm import client
    job_id = client.submit(["great film", "dull"], model="sentiment")
    client.wait(job_id, timeout=60)
    rows = client.results(job_id)
    client.cancel(job_id)  # items not yet classified never will be; the job ends `cancelled`

`Client` is the same with explicit settings; `Producer` coalesces many small jobs from a
long-lived application into few broker messages.
"""

from textlstm.client.jobs import (
    FINISHED,
    CancelResult,
    Client,
    ItemResult,
    JobStatus,
    WebhookStatus,
    cancel,
    prepare_job,
    republish,
    results,
    status,
    submit,
    wait,
)
from textlstm.client.producer import Producer

__all__ = [
    "FINISHED",
    "CancelResult",
    "Client",
    "ItemResult",
    "JobStatus",
    "Producer",
    "WebhookStatus",
    "cancel",
    "prepare_job",
    "republish",
    "results",
    "status",
    "submit",
    "wait",
]
