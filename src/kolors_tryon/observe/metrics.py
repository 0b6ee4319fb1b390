"""The service's Prometheus metrics (`tryon_*`) and one helper per thing worth counting.

Callers never touch prometheus_client: they call `job_moved(state)`,
`api_call(endpoint, code, seconds)`, `webhook_delivered(outcome)`,
`callback_received(outcome)` and so on, so that names, labels and units are decided
here once and follow Prometheus conventions (base units, `_total` counters).

The metric objects are made on first use, not at import: in a Celery worker
`PROMETHEUS_MULTIPROC_DIR` must be set before the first one exists (`observe.multiproc`
sets it in `tryon worker` before the pool forks), so that every pool process writes
its samples to files the main process's `/metrics` merges.

Gauges derived from the job store (jobs by state, slots in use, the pause) are not
here: they are computed once per scrape from the store (`ops.exposition`), never per
process, so that N processes do not report N copies.
"""

from __future__ import annotations

import math
import threading
from typing import Final

from prometheus_client import Counter, Gauge, Histogram

from kolors_tryon.config import defaults

__all__ = [
    "account_paused",
    "account_units",
    "api_call",
    "budget_reached",
    "callback_received",
    "job_moved",
    "job_overdue",
    "queue_wait",
    "result_latency",
    "units_spent",
    "webhook_delivered",
]

PREFIX: Final = "tryon"


class _Metrics:
    """The metric objects of this process (made once, after multiprocess setup)."""

    def __init__(self) -> None:
        self.transitions = Counter(
            f"{PREFIX}_job_transitions",
            "Job state changes, by the state entered.",
            ["state"],
        )
        self.api_calls = Counter(
            f"{PREFIX}_kling_requests",
            "Kling API requests, by endpoint and answer (business code, http_NNN, "
            "timeout or network).",
            ["endpoint", "code"],
        )
        self.api_latency = Histogram(
            f"{PREFIX}_kling_request_duration_seconds",
            "Duration of Kling API requests, answer or failure included.",
            ["endpoint"],
            buckets=defaults.API_LATENCY_BUCKETS,
        )
        self.units = Counter(
            f"{PREFIX}_units_spent",
            "Kling units charged for succeeded jobs (final_unit_deduction).",
        )
        self.queue_wait = Histogram(
            f"{PREFIX}_job_queue_wait_seconds",
            "Seconds from a job's intake to its submission to Kling.",
            buckets=defaults.JOB_LATENCY_BUCKETS,
        )
        self.result_latency = Histogram(
            f"{PREFIX}_job_result_latency_seconds",
            "Seconds from a job's submission to its end, by the state it ended in.",
            ["state"],
            buckets=defaults.JOB_LATENCY_BUCKETS,
        )
        self.overdue = Counter(
            f"{PREFIX}_jobs_overdue",
            "Jobs whose Kling task outlived TRYON_TRACK_DEADLINE (reported overdue, still "
            "followed).",
        )
        self.webhooks = Counter(
            f"{PREFIX}_webhook_deliveries",
            "Webhook deliveries to producers, by outcome.",
            ["outcome"],
        )
        self.callbacks = Counter(
            f"{PREFIX}_callbacks_received",
            "Kling callbacks received, by outcome.",
            ["outcome"],
        )
        self.budgets = Counter(
            f"{PREFIX}_producer_budget_reached",
            "Times a producer reached its daily unit budget (its jobs then wait queued), "
            "by producer.",
            ["producer"],
        )
        self.pauses = Counter(
            f"{PREFIX}_account_pauses",
            "Times submissions were paused for the whole account (credentials, balance), "
            "by the business code that started the pause.",
            ["code"],
        )
        # Read by one process (a worker's account watcher); `mostrecent` keeps the
        # latest write across processes instead of summing them.
        self.units_remaining = Gauge(
            f"{PREFIX}_account_units_remaining",
            "Remaining units of each of the account's resource packs (GET /account/costs).",
            ["pack"],
            multiprocess_mode="mostrecent",
        )
        self.units_total = Gauge(
            f"{PREFIX}_account_units",
            "Total units of each of the account's resource packs (GET /account/costs).",
            ["pack"],
            multiprocess_mode="mostrecent",
        )


_made: _Metrics | None = None
_lock = threading.Lock()


def _metrics() -> _Metrics:
    global _made
    if _made is None:
        with _lock:
            if _made is None:
                _made = _Metrics()
    return _made


def job_moved(state: str) -> None:
    """A job entered `state` (count once per change, where the change is announced)."""
    _metrics().transitions.labels(state=state).inc()


def job_overdue(count: int = 1) -> None:
    """Jobs were reported overdue (once per job, where `job.overdue` is published)."""
    _metrics().overdue.inc(count)


def budget_reached(producer: str) -> None:
    """A producer reached its daily budget (once per producer and day, with its event)."""
    _metrics().budgets.labels(producer=producer).inc()


def api_call(endpoint: str, code: str, seconds: float) -> None:
    """One Kling request: `endpoint` (create, query, list, account_costs) and its answer."""
    m = _metrics()
    m.api_calls.labels(endpoint=endpoint, code=code).inc()
    m.api_latency.labels(endpoint=endpoint).observe(max(0.0, seconds))


def units_spent(deduction: str | None) -> None:
    """Add a succeeded task's `final_unit_deduction` (a string of unconfirmed format)."""
    units = parse_units(deduction)
    if units:
        _metrics().units.inc(units)


def queue_wait(seconds: float) -> None:
    """A job was submitted `seconds` after it was taken in."""
    _metrics().queue_wait.observe(max(0.0, seconds))


def result_latency(state: str, seconds: float) -> None:
    """A job ended in `state` `seconds` after it was submitted."""
    _metrics().result_latency.labels(state=state).observe(max(0.0, seconds))


def webhook_delivered(outcome: str) -> None:
    """One webhook delivery attempt ended: e.g. `delivered`, `failed`, `retrying`, `gone`."""
    _metrics().webhooks.labels(outcome=outcome).inc()


def callback_received(outcome: str) -> None:
    """One Kling callback: e.g. `forwarded`, `bad_token`, `bad_body` (web), `applied`,
    `duplicate` (worker)."""
    _metrics().callbacks.labels(outcome=outcome).inc()


def account_paused(code: str) -> None:
    """Submissions were paused for the whole account (count once per pause, at its start)."""
    _metrics().pauses.labels(code=code).inc()


def account_units(pack: str, remaining: float, total: float | None) -> None:
    """The latest reading of one resource pack."""
    m = _metrics()
    m.units_remaining.labels(pack=pack).set(remaining)
    if total is not None:
        m.units_total.labels(pack=pack).set(total)


def parse_units(text: str | None) -> float:
    """Units from `final_unit_deduction` ("1", "0.5", " 2 "); 0 when absent or unreadable."""
    if text is None:
        return 0.0
    try:
        value = float(str(text).strip())
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0
