"""Reading a `/metrics` endpoint as Prometheus would: an HTTP GET, parsed by
prometheus_client's own parser."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import requests
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, headers: Mapping[str, str] | None = None) -> Samples:
    """Every sample of one scrape, keyed by (sample name, labels)."""
    response = requests.get(url, headers=dict(headers or {}), timeout=10)
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (0 if none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def total(scrapes: Iterable[Samples], name: str, **labels: str) -> float:
    """`value` summed over several scrapes (one per worker: counters are per process)."""
    return sum(value(samples, name, **labels) for samples in scrapes)
