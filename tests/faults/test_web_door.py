"""Invariant 5 at the HTTP door: `POST /v1/jobs` refuses the whole bad-input corpus at once.

The same corpus the queue doors face (`bad_inputs.py`) goes through `tryon web`: every
message is answered 422 naming its field and rule, nothing reaches the queue, and the
Kling emulator sees no create.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from bad_inputs import corpus, job_id_cases, not_jobs

from web_service import Web, check_documented, jobs_queue_depth, served_openapi, web_stack

BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{48,}")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """`tryon web` on RabbitMQ + PostgreSQL with the emulator, and no worker."""
    with web_stack(tmp_path_factory.mktemp("web-door")) as web:
        yield web


def test_the_bad_input_corpus_is_refused_at_the_door(web: Web) -> None:
    """Every bad message gets 422 naming its field and rule; nothing is queued or created."""
    tag = f"web-{uuid.uuid4().hex[:6]}"
    openapi = served_openapi(web)
    creates_before = int(web.emulator.stats()["create_requests"])
    depth_before = jobs_queue_depth(web)
    failures: list[str] = []
    cases = corpus(tag) + job_id_cases(tag)
    for case in cases:
        response = web.post_jobs(case.resolved(), timeout=60)
        where = f"{case.name}: {response.status_code}"
        if response.status_code != 422:
            failures.append(f"{where} {response.text[:200]}")
            continue
        check_documented(openapi, "POST", "/v1/jobs", response)
        error = response.json()["error"]
        fields = [p["field"] for p in error["problems"]]
        for name in case.fields:
            if not any(re.match(rf"{re.escape(name)}($|[.\[])", f) for f in fields):
                failures.append(f"{where} names {fields}, not {name!r}")
        if not all(p["rule"] and re.fullmatch(r"[a-z0-9_]+", p["rule"]) for p in error["problems"]):
            failures.append(f"{where} has a problem without a rule: {error['problems']}")
        failures += [
            f"{where} does not say {word!r}: {error['message'][:200]}"
            for word in case.says
            if word.lower() not in error["message"].lower()
        ]
        if BASE64_RUN.search(response.text):
            failures.append(f"{where} echoes a Base64-like run")
    for item in not_jobs(tag):
        response = web.post_jobs(item.body, timeout=10)
        if item.name == "json-array":  # an array is the batch form: its one item is refused
            assert response.status_code == 422, response.text
            assert response.json()["results"][0]["status"] == 422
            continue
        if response.status_code != 422:
            failures.append(f"{item.name}: {response.status_code} {response.text[:200]}")
            continue
        error = response.json()["error"]
        if item.says.lower() not in error["message"].lower():
            failures.append(f"{item.name}: does not say {item.says!r}: {error['message']}")
        if error["problems"][0]["field"] != "message":
            failures.append(f"{item.name}: names {error['problems'][0]['field']!r}")
    assert not failures, f"{len(failures)} failure(s):\n" + "\n".join(failures)
    assert int(web.emulator.stats()["create_requests"]) == creates_before == 0
    assert jobs_queue_depth(web) == depth_before
