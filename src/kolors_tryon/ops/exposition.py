"""The `/metrics` text: this machine's process metrics plus gauges read from the store.

Two sources, merged per scrape:
- the `observe.metrics` samples of every process: in a worker, the multiprocess files
  of the whole pool (`MultiProcessCollector`); elsewhere, this process's registry;
- `StoreCollector`: jobs by state, account slots in use and their limit, whether the
  account is paused, read from the job store once per scrape. They describe the whole
  deployment, not a process, so no process keeps a copy of them (a custom collector
  is also the only kind multiprocess mode cannot merge).

Every worker and every `tryon web` serves the same store gauges: scrape one of them for
those (or `max by` in PromQL); counters are per process and are summed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from kolors_tryon.config import Settings
from kolors_tryon.config.accounts import account_pool
from kolors_tryon.observe import multiproc
from kolors_tryon.store import JobState, JobStore

__all__ = ["CONTENT_TYPE", "MetricsServer", "StoreCollector", "metrics_registry", "render"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StoreCollector(Collector):
    """Gauges of the deployment read from the job store at scrape time, once."""

    def __init__(
        self, store: JobStore, max_in_flight: int, pool: Sequence[tuple[str, int]] = ()
    ) -> None:
        self._store = store
        self._limit = max_in_flight
        self._pool = tuple(pool)  # (name, limit) of each account when a pool is configured

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("tryon_store_up", "1 when the job store answered this scrape.")
        try:
            counts = self._store.jobs.count_by_state()
            in_use = self._store.jobs.in_flight()
            pause = self._store.account.current_pause()
        except Exception as exc:
            log.warning("metrics: the job store does not answer (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily(
            "tryon_jobs", "Jobs in each state, in the store.", labels=["state"]
        )
        for state in JobState:
            jobs.add_metric([state.value], counts.get(state.value, 0))
        yield jobs
        yield GaugeMetricFamily(
            "tryon_account_slots_in_use", "Account try-on slots held by our jobs.", value=in_use
        )
        yield GaugeMetricFamily(
            "tryon_account_slots_limit",
            "TRYON_MAX_IN_FLIGHT: slots we may hold.",
            value=self._limit,
        )
        paused = GaugeMetricFamily(
            "tryon_account_paused",
            "1 while submissions are paused for the whole account (with the reason's code).",
            labels=["code"],
        )
        paused.add_metric([pause.code if pause else ""], 1 if pause else 0)
        yield paused
        if self._pool:
            yield from self._per_account()

    def _per_account(self) -> Iterator[GaugeMetricFamily]:
        """The pool's gauges, each with the label `account`."""
        usage = self._store.pool.usage([name for name, _ in self._pool])
        limits = dict(self._pool)
        families = {
            "in_use": GaugeMetricFamily(
                "tryon_pool_slots_in_use", "Slots held per account.", labels=["account"]
            ),
            "limit": GaugeMetricFamily(
                "tryon_pool_slots_limit", "max_in_flight per account.", labels=["account"]
            ),
            "paused": GaugeMetricFamily(
                "tryon_pool_paused", "1 while the account is paused.", labels=["account", "code"]
            ),
            "units": GaugeMetricFamily(
                "tryon_pool_units_spent",
                "Units spent per account (final_unit_deduction).",
                labels=["account"],
            ),
            "created": GaugeMetricFamily(
                "tryon_pool_jobs_created", "Jobs created per account.", labels=["account"]
            ),
        }
        for u in usage:
            families["in_use"].add_metric([u.name], u.in_flight)
            families["limit"].add_metric([u.name], limits[u.name])
            families["paused"].add_metric(
                [u.name, u.pause.code if u.pause else ""], int(bool(u.pause))
            )
            families["units"].add_metric([u.name], u.units_spent)
            families["created"].add_metric([u.name], u.created)
        yield from families.values()


class _ThisProcess(Collector):
    """This process's own metrics (when not in multiprocess mode)."""

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


def metrics_registry(settings: Settings, store: JobStore) -> CollectorRegistry:
    """A registry for one `/metrics`: the process (or pool) metrics and the store gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if multiproc.enabled():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    pool = (
        [(a.name, a.max_in_flight) for a in account_pool(settings)]
        if settings.kling_accounts
        else []
    )
    registry.register(StoreCollector(store, settings.max_in_flight, pool))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of `registry`."""
    return generate_latest(registry)


class MetricsServer:
    """`/metrics` of a worker, served by its main process on `metrics_host:metrics_port`.

    The store it reads is opened here and dropped in forked children (its pooled
    connections must not be shared with the pool processes forked after it).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: JobStore | None = None
        self._server: Any = None
        self._lock = threading.Lock()

    def start(self) -> int | None:
        """Listen; returns the port, or None when off or the port is taken (logged)."""
        settings = self._settings
        if settings.metrics_port == 0:
            return None
        with self._lock:
            store = JobStore.from_url(settings.effective_database_url)
            os.register_at_fork(after_in_child=lambda: store.engine.dispose(close=False))
            self._store = store
            try:
                server, _thread = start_http_server(
                    settings.metrics_port,
                    addr=settings.metrics_host,
                    registry=metrics_registry(settings, store),
                )
            except OSError as exc:
                log.warning(
                    "metrics: cannot listen on %s:%d (%s); set TRYON_METRICS_PORT to a free "
                    "port for each worker on this machine",
                    settings.metrics_host,
                    settings.metrics_port,
                    exc.strerror or type(exc).__name__,
                )
                return None
            self._server = server
        log.info("metrics at http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
        return settings.metrics_port

    def stop(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()
                self._server = None
            if self._store is not None:
                self._store.dispose()
                self._store = None
