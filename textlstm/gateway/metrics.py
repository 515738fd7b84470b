"""The gateway's Prometheus metrics, in a registry of its own per app.

One registry per app (not prometheus_client's global one) so that tests can build many apps in
one process, and so a gateway's `/metrics` shows only the gateway. With `--workers N` each
uvicorn process counts its own requests: scrape them as one target behind the port and the
totals are per process (prometheus_client's multiprocess mode is not used).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)


class GatewayMetrics:
    """Requests by route and status, their latency, and the jobs and items submitted."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "textlstm_gateway_requests_total",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "textlstm_gateway_request_seconds",
            "Time from receiving a request to its response head, by route template.",
            ("route",),
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.jobs = Counter(
            "textlstm_gateway_jobs_submitted_total",
            "Jobs accepted (202) and published.",
            registry=self.registry,
        )
        self.items = Counter(
            "textlstm_gateway_items_submitted_total",
            "Items of the jobs accepted.",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # Route templates (`/v1/jobs/{job_id}`), never raw paths: bounded label values.
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def submitted(self, items: int, jobs: int = 1) -> None:
        self.jobs.inc(jobs)
        self.items.inc(items)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
