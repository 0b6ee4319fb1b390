"""The local results directory as a copy backend: write, find, delete, and refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from kolors_tryon.config import Settings
from kolors_tryon.pipeline.storage import ResultCopies, StorageError


@pytest.fixture
def copies(tmp_path: Path) -> ResultCopies:
    """Local copies under tmp_path/results."""
    return ResultCopies(Settings.model_validate({"data_dir": str(tmp_path)}))


def test_put_writes_under_the_job_folder_and_url_is_a_file_uri(
    copies: ResultCopies, tmp_path: Path
) -> None:
    """A copy is `<results>/<job_id>/<name>`, written whole; its URL is its file:// URI."""
    location = copies.put("job-1", "0.png", b"\x89PNG data", "image/png")
    assert Path(location) == (tmp_path / "results" / "job-1" / "0.png").resolve()
    assert Path(location).read_bytes() == b"\x89PNG data"
    assert not list((tmp_path / "results" / "job-1").glob("*.part"))
    assert copies.url(location, expires=60) == Path(location).as_uri()


def test_delete_counts_once_and_delete_job_sweeps_strays(copies: ResultCopies) -> None:
    """Deleting twice counts once; the job's folder goes with its stray files."""
    location = copies.put("job-1", "0.png", b"x", "image/png")
    Path(location).with_name("1.png.part").write_bytes(b"half")
    assert copies.delete(location) is True
    assert copies.delete(location) is False
    assert copies.delete_job("job-1") == 1
    assert not Path(location).parent.exists()
    assert copies.delete_job("job-1") == 0


def test_a_path_outside_the_results_directory_is_never_deleted(
    copies: ResultCopies, tmp_path: Path
) -> None:
    """A record is data: a `stored` naming a file elsewhere is refused, not deleted."""
    elsewhere = tmp_path / "precious.txt"
    elsewhere.write_text("keep me")
    with pytest.raises(StorageError, match="not under"):
        copies.delete(str(elsewhere))
    with pytest.raises(StorageError, match="not under"):
        copies.delete(str(tmp_path / "results" / ".." / "precious.txt"))
    assert elsewhere.read_text() == "keep me"
