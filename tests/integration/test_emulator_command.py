"""The ``tryon emulator`` command: its help and a real run stopped with Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import requests
from click.testing import CliRunner

from kolors_tryon.emulator.command import emulator_command

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
    ["--drop-rate", "--throttle-rate", "--error-rate", "--account-error", "--concurrency"],
)
def test_help_explains_each_knob(option: str) -> None:
    """--help lists every fault knob with what it emulates."""
    result = CliRunner().invoke(emulator_command, ["--help"])
    assert result.exit_code == 0
    assert option in result.output


def test_bad_option_values_are_refused() -> None:
    """Out-of-range knobs and a lone --access-key are usage errors."""
    runner = CliRunner()
    assert runner.invoke(emulator_command, ["--fail-rate", "2"]).exit_code == 2
    assert runner.invoke(emulator_command, ["--access-key", "ak"]).exit_code == 2


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
