"""The ``tryon emulator`` command: its help, its option checks and knobs, a real run."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from kolors_tryon.emulator import command
from kolors_tryon.emulator.command import emulator_command
from kolors_tryon.emulator.config import EmulatorConfig

_RUN = (
    "import signal\n"
    # A child started in the background may inherit SIGINT ignored; restore Ctrl-C.
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "from kolors_tryon.emulator.command import emulator_command\n"
    "emulator_command(['--port', '0', '--prefix', '/kling', '--api-key', 'sk-cli',"
    " '--account-error', '1102'])\n"
)


@pytest.mark.parametrize(
    "option",
    [
        "--drop-rate",
        "--throttle-rate",
        "--error-rate",
        "--account-error",
        "--concurrency",
        "--index-lag",
        "--late-create-rate",
        "--late-create-seconds",
        "--units-total",
        "--no-account-costs",
        "--account-costs-min-interval",
    ],
)
def test_help_explains_each_knob(option: str) -> None:
    """--help lists every fault knob with what it emulates."""
    result = CliRunner().invoke(emulator_command, ["--help"])
    assert result.exit_code == 0
    assert option in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--fail-rate", "2"],
        ["--access-key", "ak"],
        ["--late-create-rate", "1.5"],
        ["--index-lag", "-1"],
        ["--late-create-seconds", "inf"],
        ["--units-total", "-3"],
        ["--account-costs-min-interval", "-1"],
    ],
)
def test_bad_option_values_are_refused(args: list[str]) -> None:
    """Out-of-range or non-finite knobs and a lone --access-key are usage errors."""
    assert CliRunner().invoke(emulator_command, args).exit_code == 2


@pytest.mark.parametrize(
    ("args", "knob", "value"),
    [
        ([], "index_lag", 0.0),
        (["--index-lag", "2.5"], "index_lag", 2.5),
        ([], "late_create_rate", 0.0),
        (["--late-create-rate", "0.3"], "late_create_rate", 0.3),
        ([], "late_create_seconds", 35.0),
        (["--late-create-seconds", "40"], "late_create_seconds", 40.0),
        ([], "units_total", 1000.0),
        (["--units-total", "20"], "units_total", 20.0),
        ([], "account_costs_enabled", True),
        (["--no-account-costs"], "account_costs_enabled", False),
        ([], "account_costs_min_interval", 1.0),
        (["--account-costs-min-interval", "0"], "account_costs_min_interval", 0.0),
    ],
)
def test_options_set_the_new_knobs(
    monkeypatch: pytest.MonkeyPatch, args: list[str], knob: str, value: Any
) -> None:
    """Each new option (or its default) reaches the emulator's configuration."""
    seen: list[EmulatorConfig] = []

    class Recorder:
        """Stands in for the server: records the configuration instead of serving."""

        def __init__(self, config: EmulatorConfig) -> None:
            seen.append(config)

        def serve_forever(self, ready: Any = None) -> None:
            """Return at once, as if Ctrl-C came."""

    monkeypatch.setattr(command, "EmulatorServer", Recorder)
    result = CliRunner().invoke(emulator_command, args)
    assert result.exit_code == 0, result.output
    [config] = seen
    assert getattr(config, knob) == value


def test_command_serves_until_ctrl_c() -> None:
    """The command prints where it listens, serves the API, and exits 0 on Ctrl-C."""
    process = subprocess.Popen([sys.executable, "-c", _RUN], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "sk-cli" in line
        url = line.split(" listening on ")[1].split()[0]
        assert url.endswith("/kling")
        answer = requests.post(
            url + "/v1/images/kolors-virtual-try-on",
            json={},
            headers={"Authorization": "Bearer sk-cli"},
            timeout=10,
        )
        assert (answer.status_code, answer.json()["code"]) == (429, 1102)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
