"""Invariant 5 at every intake door: bad input gets a clear error and costs nothing.

A corpus of about a hundred bad job messages (`bad_inputs.py`) goes through each door,
the Python `enqueue()`, the `tryon batch` / `tryon submit` commands and plain JSON
published by any AMQP client, to ONE real worker on RabbitMQ + PostgreSQL. The doors
that take jobs from people refuse each one before publishing, naming its fields (nothing
reaches the store); on the queue, every message must be recorded `rejected` (code
`invalid_job`) with a short reason that names its field and quotes no image data;
messages that are not JSON objects must be dead-lettered with their reason; the Kling
emulator must see no create; and afterwards the worker must still run a valid job to
success.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from bad_inputs import (
    Case,
    Img,
    corpus,
    images,
    job_id_cases,
    not_jobs,
    valid_job,
)

from harness import (
    SAMPLES,
    Deployment,
    dead_letters,
    publish_raw,
    rabbit_stack,
    wait_until,
)
from kolors_tryon import InvalidJob, enqueue
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.jobs import JobRejected, validate_job
from kolors_tryon.store import JobRecord, JobState

Stack = tuple[Deployment, EmulatorServer]

MAX_REASON = 600
# A run this long of Base64 characters in a reason can only be quoted data.
BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{48,}")
REASON_HEADER = "x-tryon-reason"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One deployment on RabbitMQ + PostgreSQL with one worker (concurrency 2), for all doors."""
    with rabbit_stack(tmp_path_factory.mktemp("bad-inputs"), task_duration=0.5) as stack:
        yield stack


# ---------------------------------------------------------------------------- checks ----
def door_tag(door: str) -> str:
    return f"{door}-{uuid.uuid4().hex[:6]}"


def create_requests(server: EmulatorServer) -> int:
    return int(server.stats()["create_requests"])


def rejection_problems(case: Case, record: JobRecord) -> list[str]:
    """What is wrong with how `case` was recorded (empty when it is a clear, clean rejection)."""
    where = f"{case.name} [{case.job_id}]"
    if record.state is not JobState.REJECTED or record.error is None:
        return [f"{where}: state {record.state}, error {record.error}"]
    text = record.error.message
    problems = []
    if record.error.code != "invalid_job":
        problems.append(f"code {record.error.code!r}")
    problems += [f"does not name {name!r}" for name in case.fields if name not in text]
    problems += [f"does not say {word!r}" for word in case.says if word.lower() not in text.lower()]
    problems += [f"quotes {word!r}" for word in case.never_says if word in text]
    if len(text) >= MAX_REASON:
        problems.append(f"is {len(text)} characters long")
    if not text.isprintable():
        problems.append("holds control characters")
    if "internal error" in text:
        problems.append("reports a crash of a check instead of a rule")
    if BASE64_RUN.search(text):
        problems.append("holds a long Base64-like run")
    blob = json.dumps(record.to_json_dict())
    for value in case.long_strings():
        if value[:48] in blob or value[-48:] in blob:
            problems.append("leaks a long input string (image data?) into the record")
            break
    return [f"{where}: {problem}: {text[:300]!r}" for problem in problems]


def refusal_problems(case: Case, text: str) -> list[str]:
    """What is wrong with a door's own refusal of `case` (before publishing): it must name
    the fields and the rule, and quote no image data, as a recorded rejection does."""
    where = f"{case.name} [{case.job_id}]"
    problems = [f"does not name {name!r}" for name in case.fields if name not in text]
    problems += [f"does not say {word!r}" for word in case.says if word.lower() not in text.lower()]
    problems += [f"quotes {word!r}" for word in case.never_says if word in text]
    if "internal error" in text:
        problems.append("reports a crash of a check instead of a rule")
    if BASE64_RUN.search(text):
        problems.append("holds a long Base64-like run")
    return [f"{where}: {problem}: {text[:300]!r}" for problem in problems]


def assert_nothing_recorded(deployment: Deployment, cases: list[Case]) -> None:
    """None of `cases` reached the queue: the store never heard of them."""
    store = deployment.store()
    try:
        recorded = [case.job_id for case in cases if store.get(case.job_id) is not None]
    finally:
        store.dispose()
    assert not recorded, recorded


def await_rejections(deployment: Deployment, cases: list[Case], timeout: float = 90) -> None:
    """Wait (one polling loop) until every case is recorded, then check every record."""
    records: dict[str, JobRecord] = {}
    pending = {case.job_id for case in cases}
    assert len(pending) == len(cases), "job ids of the corpus must be unique"
    store = deployment.store()

    def all_recorded() -> bool:
        for job_id in sorted(pending):
            record = store.get(job_id)
            if record is not None and record.terminal:
                records[job_id] = record
                pending.discard(job_id)
        return not pending

    try:
        wait_until(all_recorded, timeout, 0.3, what=f"{len(cases)} jobs to be recorded")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still missing: {sorted(pending)[:20]}") from None
    finally:
        store.dispose()
    problems = [p for case in cases for p in rejection_problems(case, records[case.job_id])]
    assert not problems, f"{len(problems)} unclear rejection(s):\n" + "\n".join(problems)


def log_marks(deployment: Deployment) -> list[int]:
    return [len(worker.log_text()) for worker in deployment.workers]


def publish_valid_raw(deployment: Deployment) -> Callable[[str], None]:
    """A door for `assert_still_serving`: a valid job by its id, published as plain JSON."""
    return lambda job_id: publish_raw(deployment.settings, json.dumps(valid_job(job_id)))


def assert_still_serving(
    deployment: Deployment,
    server: EmulatorServer,
    creates_before: int,
    marks: list[int],
    submit: Callable[[str], None],
) -> None:
    """Zero creates so far; a valid job through the same door succeeds with one create;
    the worker is alive and logged no traceback while the door's corpus went through."""
    assert create_requests(server) == creates_before, "a bad job reached the paid API"
    job_id = f"ok-{uuid.uuid4().hex[:10]}"
    submit(job_id)
    store = deployment.store()
    try:
        wait_until(
            lambda: (r := store.get(job_id)) is not None and r.terminal,
            60,
            what=f"valid job {job_id} to end",
        )
        record = store.get(job_id)
    finally:
        store.dispose()
    assert record is not None and record.state is JobState.SUCCEEDED, record
    stats = server.stats()
    assert stats["create_requests_by_external_id"].get(job_id) == 1
    assert stats["create_requests"] == creates_before + 1
    assert all(worker.alive() for worker in deployment.workers)
    for worker, mark in zip(deployment.workers, marks, strict=True):
        assert "Traceback" not in worker.log_text()[mark:], worker.log_path


# ---------------------------------------------------------------------------- corpus ----
def test_corpus_is_broad_and_each_entry_is_invalid_offline() -> None:
    """The corpus has >= 50 distinct bad jobs, each refused by validate_job under its id."""
    cases = corpus("offline") + job_id_cases("offline")
    assert len(corpus("offline")) >= 50
    assert len({case.name for case in cases}) == len(cases)
    assert len({case.job_id for case in cases}) == len(cases)
    for case in cases:
        with pytest.raises(JobRejected) as caught:
            validate_job(json.dumps(case.resolved()))
        assert caught.value.job_id == case.job_id, case.name
        if "job_id" not in case.fields:
            assert case.job_id == case.message["job_id"], case.name
        assert all(name in caught.value.reason for name in case.fields), case.name
    for item in not_jobs("offline"):
        with pytest.raises(JobRejected) as caught:
            validate_job(item.body)
        assert caught.value.job_id is None, item.name


# ------------------------------------------------------------------------------ doors ----
def test_python_door_refuses_every_bad_job_before_publishing(stack: Stack) -> None:
    """enqueue(): every bad job raises InvalidJob naming its fields; nothing is published."""
    deployment, server = stack
    tag = door_tag("python")
    cases = corpus(tag) + job_id_cases(tag)
    before, marks = create_requests(server), log_marks(deployment)
    problems = []
    for case in cases:
        with pytest.raises(InvalidJob) as caught:
            enqueue(case.resolved(), deployment.settings)
        problems += refusal_problems(case, caught.value.reason)
    assert not problems, f"{len(problems)} unclear refusal(s):\n" + "\n".join(problems)
    assert_nothing_recorded(deployment, cases)
    assert_still_serving(
        deployment,
        server,
        before,
        marks,
        lambda job_id: check_enqueued(deployment, job_id),
    )


def check_enqueued(deployment: Deployment, job_id: str) -> None:
    """enqueue() of a valid job passes the local checks and returns its id."""
    assert enqueue(valid_job(job_id), deployment.settings) == job_id


def test_amqp_door_rejects_every_bad_job_at_no_cost(stack: Stack) -> None:
    """Plain JSON on the queue: every bad job rejected clearly by the worker, zero creates."""
    deployment, server = stack
    tag = door_tag("amqp")
    cases = corpus(tag) + job_id_cases(tag)
    before, marks = create_requests(server), log_marks(deployment)
    for case in cases:
        publish_raw(deployment.settings, json.dumps(case.resolved()))
    await_rejections(deployment, cases)
    assert_still_serving(
        deployment,
        server,
        before,
        marks,
        publish_valid_raw(deployment),
    )


def test_any_language_door_dead_letters_what_is_not_a_json_object(stack: Stack) -> None:
    """Bodies that are not JSON objects land in <ns>.dead, each with its x-tryon-reason."""
    deployment, server = stack
    dead_letters(deployment.settings)  # start from an empty dead-letter queue
    items = not_jobs(uuid.uuid4().hex[:8])
    assert len({item.body for item in items}) == len(items)
    before, marks = create_requests(server), log_marks(deployment)
    for item in items:
        publish_raw(deployment.settings, item.publishable())
    parked: dict[bytes, list[str]] = {}

    def all_parked() -> bool:
        for body, headers in dead_letters(deployment.settings):
            raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
            parked.setdefault(raw, []).append(str(headers.get(REASON_HEADER, "")))
        return len(parked) >= len(items)

    wait_until(all_parked, 60, 0.5, what=f"{len(items)} dead letters")
    assert set(parked) == {item.body for item in items}
    for item in items:
        (reason,) = parked[item.body]  # exactly once
        assert item.says.lower() in reason.lower(), (item.name, reason)
        assert len(reason) < MAX_REASON, (item.name, reason)
    assert_still_serving(
        deployment,
        server,
        before,
        marks,
        publish_valid_raw(deployment),
    )


def test_deep_and_unreadable_json_on_the_queue_is_rejected_not_crash_retried(stack: Stack) -> None:
    """Raw publishes nested 200 and 5000 deep, and one holding a lone surrogate: recorded
    rejected (max_depth, encoding) or dead-lettered once with its reason, never retried
    as a crash; no RecursionError in the worker's log, zero creates."""
    deployment, server = stack
    dead_letters(deployment.settings)  # start from an empty dead-letter queue
    tag = uuid.uuid4().hex[:8]
    img = valid_job("x")
    head = f'{{"human_image": "{img["human_image"]}", "cloth_image": "{img["cloth_image"]}"'
    deep_id, lone_id = f"deep-{tag}", f"lone-{tag}"
    deepest = head + f', "metadata": {{"t": "{tag}", "a": {"[" * 5000}{"]" * 5000}}}}}'
    bodies = {
        deep_id: head + f', "job_id": "{deep_id}", "metadata": {{"a": {"[" * 200}{"]" * 200}}}}}',
        lone_id: head + f', "job_id": "{lone_id}", "metadata": {{"note": "caf\\udce9"}}}}',
    }
    before, marks = create_requests(server), log_marks(deployment)
    for body in [*bodies.values(), deepest]:
        publish_raw(deployment.settings, body)
    store = deployment.store()
    try:
        wait_until(
            lambda: all((r := store.get(i)) is not None and r.terminal for i in bodies),
            60,
            what="the deep and the surrogate jobs to be recorded",
        )
        records = {job_id: store.get(job_id) for job_id in bodies}
    finally:
        store.dispose()
    for job_id, rule_words, field in (
        (deep_id, "nested too deeply", "metadata"),
        (lone_id, "lone UTF-16 surrogate", "metadata.note"),
    ):
        record = records[job_id]
        assert record is not None and record.state is JobState.REJECTED, record
        assert record.error is not None and record.error.code == "invalid_job"
        assert record.error.message.startswith(f"{field}: ") and rule_words in record.error.message
    parked: list[tuple[bytes, dict[str, Any]]] = []

    def parked_once() -> bool:
        parked.extend(dead_letters(deployment.settings))
        return len(parked) >= 1

    wait_until(parked_once, 60, 0.5, what="the 5000-deep message in the dead-letter queue")
    time.sleep(2)  # a crash would be retried and parked again: give it the time to show
    parked.extend(dead_letters(deployment.settings))
    assert [body for body, _ in parked] == [deepest.encode()]
    assert "nested too deeply" in str(parked[0][1].get(REASON_HEADER, ""))
    for worker, mark in zip(deployment.workers, marks, strict=True):
        assert "RecursionError" not in worker.log_text()[mark:], worker.log_path
    assert_still_serving(
        deployment,
        server,
        before,
        marks,
        publish_valid_raw(deployment),
    )


def test_cli_batch_door_refuses_every_bad_job_before_publishing(
    stack: Stack, tmp_path: Path
) -> None:
    """`tryon batch` of the corpus as JSON Lines: exit 2, every line named, nothing sent."""
    deployment, server = stack
    tag = door_tag("batch")
    cases = corpus(tag) + job_id_cases(tag)
    lines = [json.dumps(case.for_batch(tmp_path)) for case in cases]
    # Two lines that are not jobs at all: the command skips them and says where.
    lines.insert(3, "[1, 2, 3]")
    lines.insert(40, '{"human_image": "human.jpg", ')
    jsonl = tmp_path / "catalogue.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    before, marks = create_requests(server), log_marks(deployment)

    result = deployment.tryon("batch", str(jsonl), "--json")
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, result.stderr[-3000:]  # invalid lines: nothing published
    output = json.loads(result.stdout)
    assert output["job_ids"] == []
    invalid = output["invalid"]
    assert any(p.startswith("catalogue.jsonl:4:") and "object" in p for p in invalid)
    assert any(p.startswith("catalogue.jsonl:41:") and "JSON" in p for p in invalid)
    # Each case's line (after the two inserted ones) names its fields and rule.
    numbers = [n for n in range(1, len(lines) + 1) if n not in (4, 41)]
    problems = []
    for case, number in zip(cases, numbers, strict=True):
        said = " ".join(p for p in invalid if p.startswith(f"catalogue.jsonl:{number}: "))
        problems += refusal_problems(case, said)
    assert not problems, f"{len(problems)} unclear refusal(s):\n" + "\n".join(problems)
    assert_nothing_recorded(deployment, cases)
    assert_still_serving(deployment, server, before, marks, cli_submitter(deployment))


def check_submitted(result: Any, job_id: str) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout) == {"job_id": job_id}


def cli_submitter(deployment: Deployment) -> Callable[[str], None]:
    """Submit a valid job (the sample files) by `tryon submit`, checked to be enqueued."""
    return lambda job_id: check_submitted(deployment.submit_sample(job_id, "--json"), job_id)


SUBMIT_OPTIONS = {
    "job_id": "--job-id",
    "model_name": "--model",
    "callback_url": "--callback-url",
    "priority": "--priority",
    "metadata": "--metadata",
}


def submit_args(case: Case, folder: Path) -> list[str]:
    """`tryon submit` arguments that publish `case.message` (images as files in `folder`)."""
    args: list[str] = []
    for key, value in case.message.items():
        if isinstance(value, Img):
            path = folder / value.file_name()
            path.write_bytes(value.data)
            args += ["--human" if key == "human_image" else "--cloth", str(path)]
        elif key == "metadata":
            args += [SUBMIT_OPTIONS[key], json.dumps(value)]
        else:
            args += [SUBMIT_OPTIONS[key], str(value)]
    return [*args, "--json"]


def submit_cases(tag: str) -> list[Case]:
    img = images()

    def case(name: str, fields: str, says: tuple[str, ...] = (), **changes: Any) -> Case:
        message = {
            "job_id": f"bad-{tag}-{name}",
            "human_image": img["human"],
            "cloth_image": img["cloth"],
            **changes,
        }
        return Case(name, message, (fields,), says)

    return [
        case("cloth-gif", "cloth_image", ("GIF",), cloth_image=img["gif"]),
        case("cloth-tiny-png", "cloth_image", ("1x1",), cloth_image=img["png_1x1"]),
        case("cloth-299x300", "cloth_image", ("299x300",), cloth_image=img["png_299x300"]),
        case("human-text-file", "human_image", ("JPEG",), human_image=img["text"]),
        case("human-jpeg-cut", "human_image", ("truncated",), human_image=img["jpeg_truncated"]),
        case("human-empty-file", "human_image", ("empty",), human_image=img["empty"]),
        case(
            "bad-model",
            "model_name",
            ("kolors-virtual-try-on-v1",),
            model_name="kolors-virtual-try-on-v2",
        ),
        case("callback-ftp", "callback_url", ("ftp",), callback_url="ftp://hooks.example.com/t"),
        case("priority-42", "priority", ("0 to 9",), priority=42),
        case("metadata-array", "metadata", ("object",), metadata=["sku", "1234"]),
    ]


def test_cli_submit_door_refuses_bad_files_and_options(stack: Stack, tmp_path: Path) -> None:
    """`tryon submit` with bad files or options: exit 2 naming the field, nothing published."""
    deployment, server = stack
    tag = door_tag("submit")
    cases = submit_cases(tag)
    human = str(SAMPLES / "human.jpg")
    cloth = str(SAMPLES / "cloth-red.png")
    # Refused by the command itself (exit 2): nothing is published.
    refused = {
        f"bad-{tag}-ftp": (
            ["--human", human, "--cloth", "ftp://files.example.com/sku.png"],
            "neither an http(s) URL nor a readable file",
        ),
        f"bad-{tag}-no-file": (
            ["--human", str(tmp_path / "no-such-photo.jpg"), "--cloth", cloth],
            f"file not found: {tmp_path / 'no-such-photo.jpg'}",
        ),
        f"bad-{tag}-metadata": (
            ["--human", human, "--cloth", cloth, "--metadata", "{sku: 1}"],
            "--metadata",
        ),
        f"bad-{tag}-priority": (
            ["--human", human, "--cloth", cloth, "--priority", "high"],
            "--priority",
        ),
        f"bad-{tag}-no-cloth": (["--human", human], "--cloth"),
    }
    before, marks = create_requests(server), log_marks(deployment)
    runs = [submit_args(case, tmp_path) for case in cases]
    runs += [[*args, "--job-id", job_id, "--json"] for job_id, (args, _) in refused.items()]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda args: deployment.tryon("submit", *args), runs))

    problems = []
    for case, result in zip(cases, results[: len(cases)], strict=True):
        assert result.returncode == 2, (case.name, result.stdout, result.stderr)
        assert "nothing published" in result.stderr, result.stderr
        problems += refusal_problems(case, result.stderr)
    assert not problems, f"{len(problems)} unclear refusal(s):\n" + "\n".join(problems)
    for (job_id, (_, says)), result in zip(refused.items(), results[len(cases) :], strict=True):
        assert result.returncode == 2, (job_id, result.stdout, result.stderr)
        assert says in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert_nothing_recorded(deployment, cases)
    store = deployment.store()
    try:
        assert all(store.get(job_id) is None for job_id in refused)
    finally:
        store.dispose()
    assert_still_serving(deployment, server, before, marks, cli_submitter(deployment))


def test_cli_batch_checks_inline_base64_too(stack: Stack, tmp_path: Path) -> None:
    """`tryon batch` with images inline as Base64 checks them as files: a GIF is refused."""
    deployment, _ = stack
    img = images()
    case = Case(
        "inline-gif",
        {
            "job_id": f"bad-{door_tag('inline')}",
            "human_image": img["human"].b64(),
            "cloth_image": img["gif"].b64(),
        },
        ("cloth_image",),
        ("GIF",),
    )
    jsonl = tmp_path / "inline.jsonl"
    jsonl.write_text(json.dumps(case.message) + "\n", encoding="utf-8")
    result = deployment.tryon("batch", str(jsonl), "--json")
    assert result.returncode == 2, result.stderr[-1500:]
    said = " ".join(json.loads(result.stdout)["invalid"])
    assert said.startswith("inline.jsonl:1: cloth_image:"), said
    assert not refusal_problems(case, said)
    assert_nothing_recorded(deployment, [case])
