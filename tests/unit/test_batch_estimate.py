"""`tryon batches estimate FILE`: jobs, units, cost and duration before anything is sent."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from kolors_tryon.cli import main
from kolors_tryon.config import Settings, defaults
from kolors_tryon.ops.estimate import estimate

SAMPLES = Path(__file__).resolve().parents[2] / "src" / "kolors_tryon" / "samples"


def test_the_estimate_counts_units_cost_and_rounds_of_the_account_limit() -> None:
    """7 jobs at 3 slots: 7 units, 7 x price, 3 rounds of a typical try-on."""
    result = estimate(7, 2, Settings.model_validate({"max_in_flight": 3, "unit_price": 0.1}))
    assert (result.jobs, result.invalid, result.units) == (7, 2, 7.0)
    assert result.cost == pytest.approx(0.7)
    assert result.seconds == 3 * defaults.TYPICAL_TRYON_SECONDS


@pytest.mark.usefixtures("clean_env")
def test_the_command_reads_a_batch_file_and_leaves_invalid_jobs_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bundled sample file: invalid jobs (a cloth too small) cost nothing; the published
    price 0.07 by default; nothing is published (no broker is configured or reachable)."""
    for sample in SAMPLES.iterdir():
        shutil.copy(sample, tmp_path / sample.name)
    monkeypatch.setenv("TRYON_MAX_IN_FLIGHT", "2")
    answer = CliRunner().invoke(
        main, ["batches", "estimate", str(tmp_path / "jobs.jsonl"), "--json"]
    )
    assert answer.exit_code == 0, answer.output
    figures = json.loads(answer.output)
    assert figures["jobs"] + figures["invalid"] == 4 and figures["invalid"] >= 1
    assert figures["unit_price"] == 0.07
    assert figures["cost"] == pytest.approx(figures["jobs"] * 0.07)
    assert figures["seconds"] == math.ceil(figures["jobs"] / 2) * defaults.TYPICAL_TRYON_SECONDS
