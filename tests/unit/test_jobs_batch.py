"""Batch files and image arguments become job messages, with each problem on its line."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kolors_tryon.jobs import ImageSourceError, image_argument, read_batch, with_image_files_read

PHOTO = b"\x89PNG\r\n\x1a\n not really a png"
PHOTO_B64 = base64.b64encode(PHOTO).decode("ascii")


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_json_lines_yield_each_object_with_its_line_number(tmp_path: Path) -> None:
    """Blank lines are skipped; numbers are the file's own line numbers."""
    path = _write(tmp_path, "jobs.jsonl", '{"job_id": "a"}\n\n{"job_id": "b"}\n')
    assert list(read_batch(path)) == [(1, {"job_id": "a"}), (3, {"job_id": "b"})]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("{not json", "not valid JSON (Expecting property name enclosed in double quotes"),
        ('["a", "list"]', "a job must be a JSON object"),
        ("42", "a job must be a JSON object"),
    ],
)
def test_a_bad_json_line_is_a_problem_and_the_file_goes_on(
    tmp_path: Path, line: str, problem: str
) -> None:
    """A line that is not a JSON object is reported, and the next line is still read."""
    path = _write(tmp_path, "jobs.jsonl", f'{line}\n{{"job_id": "ok"}}\n')
    (first_number, first), second = list(read_batch(path))
    assert first_number == 1
    assert isinstance(first, str)
    assert first.startswith(problem)
    assert second == (2, {"job_id": "ok"})


def test_csv_rows_become_messages_with_typed_columns(tmp_path: Path) -> None:
    """Empty cells are left out; metadata is JSON, priority a number, garments a list."""
    path = _write(
        tmp_path,
        "jobs.CSV",
        "job_id,human_image,cloth_image,priority,metadata,garments,callback_url\n"
        'j1,h.png,c.png,3,"{""sku"": ""1""}",upper + lower,\n',
    )
    assert list(read_batch(path)) == [
        (
            2,
            {
                "job_id": "j1",
                "human_image": "h.png",
                "cloth_image": "c.png",
                "priority": 3,
                "metadata": {"sku": "1"},
                "garments": ["upper", "lower"],
            },
        )
    ]


@pytest.mark.parametrize(
    ("header", "cell", "problem"),
    [
        ("metadata", "{oops", "column metadata: not a JSON object"),
        ("priority", "high", "column priority: not a whole number"),
    ],
)
def test_a_bad_csv_cell_is_a_problem(tmp_path: Path, header: str, cell: str, problem: str) -> None:
    """A cell that cannot be converted names its column."""
    path = _write(tmp_path, "jobs.csv", f"job_id,human_image,cloth_image,{header}\nj1,h,c,{cell}\n")
    assert list(read_batch(path)) == [(2, problem)]


@pytest.mark.parametrize(
    "value", ["https://cdn.example/p.jpg", "http://cdn.example/p.jpg", "data:image/png;base64,AA"]
)
def test_urls_pass_through(value: str) -> None:
    """A URL is the job's own business: it is never read here."""
    assert image_argument(value) == value


def test_a_file_becomes_its_base64(tmp_path: Path) -> None:
    """A path names a file whose bytes go into the message as Base64."""
    photo = tmp_path / "p.png"
    photo.write_bytes(PHOTO)
    assert image_argument(str(photo)) == PHOTO_B64


def test_without_a_base_an_unreadable_value_is_a_typed_error() -> None:
    """`tryon submit` gets an error to show, not a message the worker would reject."""
    with pytest.raises(ImageSourceError, match=r"file not found: no/such/photo\.png"):
        image_argument("no/such/photo.png")
    with pytest.raises(ImageSourceError, match="neither an http"):
        image_argument("ftp://files.example.com/photo.png")


def test_with_a_base_a_missing_file_name_is_a_typed_error(tmp_path: Path) -> None:
    """In a batch file a value with a dot is a file name (Base64 has none): not found."""
    with pytest.raises(ImageSourceError, match=r"file not found: .*photos/anna\.jpg"):
        image_argument("photos/anna.jpg", base=tmp_path)


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("human_image;cloth_image", "separated by ';'"),
        ("human_image\tcloth_image", "separated by tab"),
        ("human_image,metadata", "column cloth_image: missing from the header"),
    ],
)
def test_a_csv_header_problem_is_said_once_on_line_1(
    tmp_path: Path, header: str, says: str
) -> None:
    """A CSV with another separator or without an image column: one problem, line 1."""
    path = _write(tmp_path, "jobs.csv", f"{header}\nh.png;c.png\nh.png;c.png\n")
    ((number, problem),) = list(read_batch(path))
    assert number == 1 and isinstance(problem, str) and says in problem


def test_with_a_base_an_unknown_value_is_left_to_the_worker(tmp_path: Path) -> None:
    """In a batch file the value may be Base64 already: the worker gives the verdict."""
    assert image_argument("aGVsbG8=", base=tmp_path) == "aGVsbG8="
    assert image_argument("x" * 5000, base=tmp_path) == "x" * 5000


def test_batch_entries_read_image_files_relative_to_the_batch(tmp_path: Path) -> None:
    """Relative paths in a batch file are read from the file's directory."""
    (tmp_path / "h.png").write_bytes(PHOTO)
    entry = {"human_image": "h.png", "cloth_image": "https://cdn.example/c.png", "job_id": "j"}
    assert with_image_files_read(entry, tmp_path) == {
        "human_image": PHOTO_B64,
        "cloth_image": "https://cdn.example/c.png",
        "job_id": "j",
    }
