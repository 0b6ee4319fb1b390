"""Schema migrations: from nothing and from 434ca07's store to head, on SQLite and PostgreSQL.

Every run is the real `tryon db ...` command (or `tryon worker`) in its own process,
against a real database; the store of 434ca07 is built from a frozen copy of its tables.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, insert, inspect, select

from harness import TEST_API_KEY, Deployment, base_env, free_port, fresh_database
from integration.schema_434ca07 import ACCOUNT, JOBS, METADATA, PAYLOADS
from kolors_tryon.store import JobState, JobStore, make_engine
from kolors_tryon.store.migrate import (
    MIGRATIONS_DIR,
    VERSION_TABLE,
    downgrade_schema,
    head_revision,
    include_name,
    new_revision,
    schema_differences,
    schema_status,
    upgrade_schema,
)
from kolors_tryon.store.tables import Base

# One row per state a store of that era could hold, with what each state carried.
OLD_JOBS: list[dict[str, Any]] = [
    {"job_id": "old-queued", "state": "queued", "priority": 3},
    {"job_id": "old-submitting", "state": "submitting", "lease_owner": "task-1",
     "lease_until": 1_700_000_100.0, "create_pending": True, "attempts": 1},
    {"job_id": "old-submitted", "state": "submitted", "kling_task_id": "kt-2",
     "attempts": 1, "submitted_at": 1_700_000_010.0},
    {"job_id": "old-succeeded", "state": "succeeded", "kling_task_id": "kt-3",
     "images": [{"index": 0, "url": "https://cdn.example/r.png"}], "polls": 4,
     "attempts": 1, "final_unit_deduction": "1", "finished_at": 1_700_000_060.0},
    {"job_id": "old-failed", "state": "failed", "error_code": "1301",
     "error_message": "content check failed", "retries": 2, "attempts": 1},
    {"job_id": "old-rejected", "state": "rejected", "error_code": "invalid_job",
     "error_message": "human_image: not an image", "metadata": {"sku": "1234"}},
]  # fmt: skip
PAYLOAD_JOBS = ("old-queued", "old-submitting")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind the service supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.sqlite'}"
        return
    with fresh_database() as url:
        yield url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    built = make_engine(database_url)
    yield built
    built.dispose()


def deployment_on(database_url: str, data_dir: Path) -> Deployment:
    """A deployment whose store is `database_url` (a configured store: it never self-upgrades)."""
    env = base_env(data_dir)
    env["TRYON_DATABASE_URL"] = database_url
    return Deployment(env=env, data_dir=data_dir)


def build_434ca07_store(engine: Engine) -> None:
    """A store as 434ca07 left it: its tables by `create_all`, jobs, payloads, the account."""
    METADATA.create_all(engine)
    now = 1_700_000_000.0
    with engine.begin() as connection:
        for row in OLD_JOBS:
            connection.execute(insert(JOBS).values(created_at=now, updated_at=now, **row))
        for job_id in PAYLOAD_JOBS:
            connection.execute(insert(PAYLOADS).values(job_id=job_id, body='{"x": 1}'))
        connection.execute(
            insert(ACCOUNT).values(
                id=1, version=41, paused_until=now + 300, pause_code="1102",
                pause_message="out of units", last_sweep_at=now,
            )
        )  # fmt: skip


def differences_from(engine: Engine, metadata: Any) -> list[Any]:
    """What autogenerate finds between the database and `metadata` (the service's tables)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"include_name": include_name, "version_table": VERSION_TABLE}
        )
        return list(compare_metadata(context, metadata))


def test_upgrade_from_nothing_reaches_the_tables_of_the_code(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """`tryon db upgrade` on an empty database makes exactly store/tables.py's schema."""
    deployment = deployment_on(database_url, tmp_path)
    assert deployment.tryon("db", "check").returncode == 1
    done = deployment.tryon("db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert f"to {head_revision()}" in done.stdout
    # Every later schema change must come with a migration: this fails until it does.
    assert schema_differences(engine) == []
    assert schema_status(engine).up_to_date
    checked = deployment.tryon("db", "check", "--json")
    assert checked.returncode == 0 and '"up_to_date": true' in checked.stdout
    assert deployment.tryon("db", "upgrade").stdout.endswith("nothing to do\n")


def test_revision_0001_is_the_schema_of_434ca07(engine: Engine) -> None:
    """Revision 0001 builds the very tables `create_all` made at commit 434ca07."""
    upgrade_schema(engine, "0001")
    assert schema_status(engine).current == "0001"
    assert differences_from(engine, METADATA) == []


def test_upgrade_from_434ca07_keeps_every_row_and_defaults_the_new_columns(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """A store of 434ca07 (no version table) upgrades in place: rows kept, new columns 0/null."""
    build_434ca07_store(engine)
    deployment = deployment_on(database_url, tmp_path)
    behind = deployment.tryon("db", "check")
    assert behind.returncode == 1 and "tryon db upgrade" in behind.stderr
    done = deployment.tryon("db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert schema_differences(engine) == []
    assert {i["name"] for i in inspect(engine).get_indexes("tryon_jobs")} >= {"ix_tryon_jobs_claim"}
    with engine.connect() as connection:
        jobs = {r.job_id: r for r in connection.execute(select(JOBS.c.job_id).add_columns(
            *[c for c in JOBS.c if c.name != "job_id"]
        ))}  # fmt: skip
        for row in OLD_JOBS:
            assert {k: getattr(jobs[row["job_id"]], k) for k in row} == row
        payloads = connection.execute(select(PAYLOADS.c.job_id)).scalars().all()
        assert sorted(payloads) == sorted(PAYLOAD_JOBS)
    store = JobStore(engine)
    for row in OLD_JOBS:
        record = store.get(row["job_id"])
        assert record is not None and record.state is JobState(row["state"])
    with engine.connect() as connection:
        new = connection.exec_driver_sql(
            "SELECT conflicts, resubmissions, lingering, intent_at, unresolved_until, "
            "content_hash, note FROM tryon_jobs"
        ).all()
        account = connection.exec_driver_sql(
            "SELECT version, pause_code, results_cleaned_at FROM tryon_account"
        ).one()
    assert {tuple(r) for r in new} == {(0, 0, False, None, None, None, None)}
    assert tuple(account) == (41, "1102", None)
    # Today's queries run on it: the slot count (lingering included) and the waiting line.
    assert store.jobs.in_flight() == 2
    assert [r.job_id for r in store.jobs.oldest_first(JobState.QUEUED, limit=10)] == ["old-queued"]


def test_a_worker_refuses_a_store_older_than_the_code(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """`tryon worker` on a configured store at 0001 exits 1 and says to run `tryon db upgrade`."""
    upgrade_schema(engine, "0001")
    deployment = deployment_on(database_url, tmp_path)
    deployment.env.update(
        {
            "TRYON_KLING_API_KEY": TEST_API_KEY,
            "TRYON_KLING_BASE_URL": f"http://127.0.0.1:{free_port()}",
        }
    )
    refused = deployment.tryon("worker", timeout=60)
    assert refused.returncode == 1
    assert "0001" in refused.stderr and "tryon db upgrade" in refused.stderr
    assert schema_status(engine).current == "0001"  # a worker never migrates a configured store


def test_the_embedded_store_upgrades_itself(tmp_path: Path) -> None:
    """With no TRYON_DATABASE_URL, a 434ca07 SQLite store in the data dir upgrades on first use."""
    old = make_engine(f"sqlite:///{tmp_path / 'jobs.sqlite'}")
    build_434ca07_store(old)
    deployment = Deployment(env=base_env(tmp_path), data_dir=tmp_path)
    shown = deployment.tryon("status", "old-succeeded", "--json")
    assert shown.returncode == 0, shown.stderr
    assert '"state": "succeeded"' in shown.stdout
    assert schema_status(old).up_to_date and schema_differences(old) == []
    old.dispose()


def test_many_processes_upgrading_at_once_migrate_once(database_url: str, engine: Engine) -> None:
    """Six `tryon db upgrade` started together all succeed on one correctly migrated store."""
    env = base_env(Path.cwd())
    env["TRYON_DATABASE_URL"] = database_url

    def upgrade(_: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "kolors_tryon.cli", "db", "upgrade", "--json"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    with ThreadPoolExecutor(max_workers=6) as pool:
        runs = list(pool.map(upgrade, range(6)))
    assert [r.returncode for r in runs] == [0] * 6, [r.stderr[-400:] for r in runs]
    assert sum('"before": null' in r.stdout for r in runs) == 1  # the others found it done
    assert schema_differences(engine) == []
    with engine.connect() as connection:
        assert connection.execute(select(ACCOUNT.c.id)).scalars().all() == [1]


def test_downgrade_to_0001_and_back_keeps_the_old_columns(engine: Engine) -> None:
    """0002's downgrade restores 434ca07's schema with its rows, and upgrading again works."""
    build_434ca07_store(engine)
    upgrade_schema(engine)
    assert downgrade_schema(engine, "0001").current == "0001"
    assert differences_from(engine, METADATA) == []
    with engine.connect() as connection:
        assert len(connection.execute(select(JOBS.c.job_id)).all()) == len(OLD_JOBS)
        assert len(connection.execute(select(PAYLOADS.c.job_id)).all()) == len(PAYLOAD_JOBS)
    upgrade_schema(engine)
    assert schema_differences(engine) == []


def test_a_new_revision_is_numbered_named_and_lint_clean(tmp_path: Path) -> None:
    """`tryon db revision` writes rNNNN_<slug>.py numbered after the head, lint-clean."""
    location = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, location)
    head = head_revision()
    following = f"{int(head) + 1:04d}"
    path = new_revision("add webhook deliveries", location=location)
    assert path.parent == location / "versions"
    assert path.name == f"r{following}_add_webhook_deliveries.py"
    text = path.read_text()
    assert f'revision: str = "{following}"' in text
    assert f'down_revision: str | None = "{head}"' in text
    bin_dir = Path(sys.executable).parent
    for check in (["ruff", "check", str(path)], ["ruff", "format", "--check", str(path)]):
        linted = subprocess.run(
            [str(bin_dir / check[0]), *check[1:]], capture_output=True, text=True, check=False
        )
        assert linted.returncode == 0, linted.stdout


@pytest.mark.parametrize("command", ["check", "current", "upgrade"])
def test_an_unreachable_store_is_one_line_without_its_password(
    command: str, tmp_path: Path
) -> None:
    """`tryon db ...` on a store that does not answer: exit 1, the URL's password never shown."""
    url = f"postgresql://tryon:s3cret-pw@127.0.0.1:{free_port()}/tryon"
    failed = deployment_on(url, tmp_path).tryon("db", command)
    assert failed.returncode == 1
    assert "does not answer" in failed.stderr and "Traceback" not in failed.stderr
    assert "s3cret-pw" not in failed.stderr + failed.stdout


def test_a_store_made_by_create_all_of_today_is_adopted_at_head(engine: Engine) -> None:
    """A store `create_all` made from today's tables (no version table) is stamped, not rebuilt."""
    Base.metadata.create_all(engine)
    before, after = upgrade_schema(engine)
    assert before.current is None and after.current == head_revision()
    assert schema_differences(engine) == []


def test_jobs_stored_before_producers_belong_to_default_after_upgrade(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    """Revision 0008 on a store with data: every old job is `default`'s, under its own id."""
    build_434ca07_store(engine)
    done = deployment_on(database_url, tmp_path).tryon("db", "upgrade")
    assert done.returncode == 0, done.stderr
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT job_id, producer, producer_job_id FROM tryon_jobs"
        ).all()
    assert {tuple(r) for r in rows} == {(j["job_id"], "default", j["job_id"]) for j in OLD_JOBS}
    store = JobStore(engine)
    for row in OLD_JOBS:
        record = store.get(row["job_id"], "default")
        assert record is not None and record.producer == "default"
        assert record.job_id == row["job_id"] and store.get(row["job_id"], "shop-a") is None
    assert [r.job_id for r in store.jobs.oldest_first(JobState.QUEUED, producer="default")] == [
        "old-queued"
    ]
    assert store.jobs.oldest_first(producer="shop-a") == []
