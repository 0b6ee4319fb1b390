"""The benchmarks' smallest cases still run, so that `make bench` cannot rot unseen.

CI does not run the benchmarks (they are measurements, not tests); this runs the
cheapest ones at tiny sizes, on real PostgreSQL, and checks the JSON each one writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from bench import backlog, console, throughput, validation

CASES = [
    pytest.param(
        validation,
        validation.TINY,
        {"jpeg_10mb", "png_10mb", "typical_1mb"},
        [],
        id="validation",
    ),
    pytest.param(backlog, backlog.TINY, {"claim"}, ["backlog_claim.png"], id="backlog"),
    pytest.param(
        throughput,
        throughput.TINY,
        {"pool_1", "cost_per_job"},
        ["throughput.png"],
        id="throughput",
    ),
    pytest.param(
        console, console.TINY, {"pages_ms", "ratio_to_healthz", "rows_shown"}, [], id="console"
    ),
]


@pytest.mark.serial
@pytest.mark.parametrize(("module", "sizes", "keys", "plots"), CASES)
def test_benchmark_writes_its_figures(
    tmp_path: Path, module: ModuleType, sizes: object, keys: set[str], plots: list[str]
) -> None:
    """A benchmark at tiny sizes writes its JSON (date, machine, figures) and plots."""
    out = tmp_path / "results"
    module.run(sizes, out, tmp_path)
    document = json.loads((out / f"{module.NAME}.json").read_text())
    assert {"benchmark", "date", "machine", "command", "sizes", "figures"} <= set(document)
    assert keys <= set(document["figures"])
    for name in plots:
        assert (out / name).stat().st_size > 0
