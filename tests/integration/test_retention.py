"""Retention and privacy on PostgreSQL: `tryon purge` and `tryon forget` as an operator
runs them, with copies in an S3-compatible bucket (moto's server) or the local directory."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Deployment, S3Server, fresh_database, publish_jobs, running_s3, wait_until
from kolors_tryon.config import Settings
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.pipeline.retention import FORGOTTEN_NOTE, forget
from kolors_tryon.pipeline.storage import ResultCopies
from kolors_tryon.store import JobState, JobStore, NewJob
from kolors_tryon.store.tables import PayloadRow

Setup = tuple[Deployment, S3Server | None]


@pytest.fixture(params=["s3", "local"])
def copies_on(request: pytest.FixtureRequest, rabbit_deployment: Deployment) -> Iterator[Setup]:
    """A RabbitMQ + PostgreSQL deployment whose copies go to a bucket or the local folder."""
    with running_s3() as s3:
        if request.param == "s3":
            rabbit_deployment.env.update(s3.env())
        yield rabbit_deployment, s3 if request.param == "s3" else None


def stored_objects(deployment: Deployment, s3: S3Server | None) -> list[str]:
    """Every stored copy there is: the bucket's keys, or the files of the results folder."""
    if s3 is not None:
        return s3.keys()
    root = Path(deployment.data_dir) / "results"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def run_copied_jobs(deployment: Deployment, count: int, prefix: str) -> list[str]:
    """Start a worker, run `count` jobs to success and wait until every copy landed."""
    deployment.start_worker()
    job_ids = publish_jobs(deployment.settings, count, prefix)
    store = deployment.store()
    try:

        def all_copied() -> bool:
            records = [store.get(job_id) for job_id in job_ids]
            return all(
                r is not None and r.state is JobState.SUCCEEDED and r.images[0].stored
                for r in records
            )

        wait_until(all_copied, 90, what="every job copied")
    finally:
        store.dispose()
    return job_ids


@pytest.mark.slow  # a minute or more: make test starts it first
def test_purge_deletes_old_records_and_their_copies(copies_on: Setup) -> None:
    """--dry-run counts and deletes nothing; a purge deletes ended jobs and copies, not newer."""
    deployment, s3 = copies_on
    job_ids = run_copied_jobs(deployment, 3, "purge")
    deployment.stop_all()  # so that the queued job below stays queued
    store = deployment.store()
    store.intake.accept([NewJob("still-queued", body={"human_image": "x", "cloth_image": "y"})])
    store.dispose()
    assert len(stored_objects(deployment, s3)) == 3

    recent = deployment.tryon("purge", "--older-than", "1", "--json")
    assert recent.returncode == 0, recent.stderr
    assert json.loads(recent.stdout)["jobs"] == 0

    dry = deployment.tryon("purge", "--older-than", "0", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {
        "dry_run": True,
        "jobs": 3,
        "by_state": {"succeeded": 3},
        "copies": 3,
        "kept": 0,
    }
    assert len(stored_objects(deployment, s3)) == 3

    done = deployment.tryon("purge", "--older-than", "0")
    assert done.returncode == 0, done.stderr
    assert "deleted 3 job(s) (3 succeeded), 3 copies" in done.stdout
    assert stored_objects(deployment, s3) == []
    store = deployment.store()
    try:
        assert all(store.get(job_id) is None for job_id in job_ids)
        queued = store.get("still-queued")
        assert queued is not None and queued.state is JobState.QUEUED
    finally:
        store.dispose()
    again = deployment.tryon("purge", "--older-than", "0", "--json")
    assert json.loads(again.stdout)["jobs"] == 0


def test_forget_removes_copies_urls_and_metadata_and_is_idempotent(copies_on: Setup) -> None:
    """`tryon forget`: the job's copies and URLs go, ids and state stay; twice is harmless."""
    deployment, s3 = copies_on
    kept_id, forgotten_id = run_copied_jobs(deployment, 2, "forget")
    first = deployment.tryon("forget", forgotten_id, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["copies_deleted"] == 1 and report["already_forgotten"] is False
    store = deployment.store()
    try:
        record = store.get(forgotten_id)
        other = store.get(kept_id)
    finally:
        store.dispose()
    assert record is not None and other is not None
    assert record.state is JobState.SUCCEEDED and record.kling_task_id
    assert record.images == [] and record.metadata == {}
    assert record.note == FORGOTTEN_NOTE
    assert other.images[0].stored and other.metadata == {"n": 0}
    (remaining,) = stored_objects(deployment, s3)
    assert kept_id in remaining

    second = deployment.tryon("forget", forgotten_id, "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["already_forgotten"] is True
    assert json.loads(second.stdout)["copies_deleted"] == 0
    unknown = deployment.tryon("forget", "no-such-job")
    assert unknown.returncode == 1 and "no job" in unknown.stderr


@pytest.fixture
def store_only(tmp_path: Path) -> Iterator[tuple[JobStore, ResultCopies]]:
    """A fresh PostgreSQL job store and local copies, no worker: states set by hand."""
    with fresh_database() as url:
        store = JobStore.from_url(url)
        store.create_schema()
        settings = Settings.model_validate({"database_url": url, "data_dir": str(tmp_path)})
        try:
            yield store, ResultCopies(settings)
        finally:
            store.dispose()


def test_forget_ends_a_queued_job_and_deletes_its_photos(
    store_only: tuple[JobStore, ResultCopies],
) -> None:
    """A queued job's create body (the Base64 photos) is deleted; it ends failed `forgotten`."""
    store, copies = store_only
    store.intake.accept([NewJob("q-1", body={"human_image": "photo"}, metadata={"person": "Ann"})])
    report = forget(store, copies, "q-1")
    assert report is not None and report.payload_deleted and not report.in_flight
    record = store.get("q-1")
    assert record is not None and record.state is JobState.FAILED
    assert record.error is not None and record.error.code == "forgotten"
    assert record.metadata == {}
    with store.engine.connect() as conn:
        assert conn.execute(PayloadRow.__table__.select()).all() == []
    assert store.claims.next(5, lease_seconds=10) == []


def test_forget_leaves_a_job_in_flight_alone(store_only: tuple[JobStore, ResultCopies]) -> None:
    """A job being submitted keeps its photos (the create may be on its way): retry later."""
    store, copies = store_only
    store.intake.accept([NewJob("f-1", body={"human_image": "photo"}, metadata={"person": "Bo"})])
    (claim,) = store.claims.next(5, lease_seconds=10)
    report = forget(store, copies, claim.job_id)
    assert report is not None and report.in_flight
    record = store.get("f-1")
    assert record is not None and record.state is JobState.SUBMITTING
    assert record.metadata == {"person": "Bo"}


def test_forget_while_the_bucket_is_down_clears_the_record_and_a_rerun_finishes(
    emulator: EmulatorServer, rabbit_deployment: Deployment
) -> None:
    """Bucket down: the record is cleared and the pending copy dropped (exit 1); rerun: 0."""
    deployment = rabbit_deployment
    with running_s3(started=False) as s3:
        deployment.env.update(s3.env())
        deployment.env.update({"TRYON_COPY_RETRY_BASE": "0.5", "TRYON_COPY_RETRY_MAX": "1"})
        deployment.start_worker()
        (job_id,) = publish_jobs(deployment.settings, 1, "late")
        store = deployment.store()
        try:
            wait_until(
                lambda: (status := store.copies.status(job_id)) is not None and status[0] >= 1,
                60,
                what="a failed copy",
            )
            done = deployment.tryon("forget", job_id, "--json")
            cleared = store.get(job_id)
            assert cleared is not None and cleared.images == [] and cleared.metadata == {}
            assert store.copies.status(job_id) is None
            s3.start()
        finally:
            store.dispose()
        # The store was down: forget could not sweep the bucket, and says so.
        assert done.returncode == 1 and "run again" in done.stderr
        again = deployment.tryon("forget", job_id, "--json")
        assert again.returncode == 0, again.stderr
        assert s3.keys() == []
