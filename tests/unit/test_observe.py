"""Reading account packs and unit deductions, and the redacting log formatters."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from kolors_tryon.config import Settings
from kolors_tryon.kling.account import parse_account_costs
from kolors_tryon.observe.context import job_context
from kolors_tryon.observe.metrics import parse_units
from kolors_tryon.ops.logs import configure_logging

PACK = {
    "resource_pack_name": "p",
    "total_quantity": 100,
    "remaining_quantity": 40,
    "status": "online",
}


@pytest.mark.parametrize(
    ("text", "units"),
    [("1", 1.0), (" 2.5 ", 2.5), ("0", 0.0), (None, 0.0), ("n/a", 0.0), ("-3", 0.0), ("nan", 0.0)],
)
def test_unit_deductions_are_read_defensively(text: str | None, units: float) -> None:
    """final_unit_deduction (format unconfirmed) counts as units only when it is one."""
    assert parse_units(text) == units


@pytest.mark.parametrize(
    ("data", "remaining"),
    [
        ({"code": 0, "resource_pack_subscribe_infos": [PACK]}, 40.0),
        ({"resource_pack_subscribe_infos": [{**PACK, "remaining_quantity": "12.5"}]}, 12.5),
        ({"resource_pack_subscribe_infos": [PACK, {**PACK, "status": "expired"}]}, 40.0),
        ({"data": {"resource_pack_subscribe_infos": [PACK]}}, 40.0),
        ({"resource_pack_subscribe_infos": []}, 0.0),
        ({"resource_pack_subscribe_infos": "none"}, None),
        ({"balance": 3}, None),
        ([PACK], None),
        (None, None),
    ],
)
def test_account_costs_are_parsed_or_unknown(data: Any, remaining: float | None) -> None:
    """Packs sum their active remainders; an answer of another shape is unknown (None)."""
    costs = parse_account_costs(data)
    assert (costs.remaining if costs is not None else None) == remaining


SECRETS = ("sk-abcdefghijklmnop", "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJhayJ9.c2lnbmF0dXJl", "A" * 200)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_lines_carry_the_job_and_no_secret(log_format: str) -> None:
    """Both formats name the job of the context and redact keys, JWTs and Base64 runs."""
    stream = io.StringIO()
    handler = configure_logging(Settings.model_validate({"log_format": log_format}), stream)
    try:
        with job_context("job-42", kling_task_id="task-9"):
            logging.getLogger("kolors_tryon.test").info(
                "answer quoted %s, %s, %s and https://cdn/x.png?X-Amz-Signature=s3cr3t", *SECRETS
            )
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue().strip()
    for secret in (*SECRETS, "s3cr3t"):
        assert secret not in line
    if log_format == "json":
        data = json.loads(line)
        assert (data["job_id"], data["kling_task_id"], data["level"]) == (
            "job-42",
            "task-9",
            "INFO",
        )
    else:
        assert "job_id=job-42" in line and "kling_task_id=task-9" in line
