"""`tryon validate` and `tryon schema`: the job contract, offline, as the worker checks it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final, NoReturn

import click

from kolors_tryon.cli import door
from kolors_tryon.cli.enqueue import checked_lines
from kolors_tryon.config import Settings
from kolors_tryon.jobs import JobRejected, Problem, ValidationOptions, job_json_schema, validate_job

__all__ = ["schema", "validate"]

# Suffixes `tryon validate` reads as batch files, line by line, as `tryon batch` does.
BATCH_SUFFIXES: Final = (".jsonl", ".ndjson", ".csv")


def _problem_json(problem: Problem) -> dict[str, Any]:
    return {"field": problem.field, "rule": problem.rule, "message": problem.message}


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@door.json_option
def validate(file: Path, as_json: bool) -> None:
    """Check a job (JSON) offline exactly as the worker does: exit 0 valid, 2 invalid.

    A .jsonl, .ndjson or .csv file is a batch: each line is checked as `tryon batch`
    checks it (image paths read relative to the file), and every problem is listed.
    """
    settings = door.command_settings()
    if file.suffix.lower() in BATCH_SUFFIXES:
        _validate_batch(file, settings, as_json)
    try:
        valid = validate_job(file.read_bytes(), ValidationOptions.from_settings(settings))
    except JobRejected as rejection:
        problems = [_problem_json(p) for p in rejection.problems]
        if as_json:
            door.emit({"valid": False, "job_id": rejection.job_id, "problems": problems})
        else:
            click.secho(f"invalid: {file}", fg="red")
            for problem in rejection.problems:
                click.echo(f"  {problem}")
        sys.exit(door.EXIT_INVALID)
    images = {
        name: info
        and {
            "format": info.format,
            "width": info.width,
            "height": info.height,
            "bytes": info.size_bytes,
        }
        for name, info in (("human_image", valid.human), ("cloth_image", valid.cloth))
    }
    if as_json:
        door.emit({"valid": True, "job_id": valid.job_id, "images": images})
    else:
        click.secho(f"valid: job {valid.job_id}", fg="green")
        for name, info in images.items():
            click.echo(f"  {name}: {info or 'URL (not fetched: preflight is off)'}")


def _validate_batch(file: Path, settings: Settings, as_json: bool) -> NoReturn:
    """`tryon validate` of a batch file: a verdict per line, exit 0 all valid, 2 not."""
    lines = checked_lines(file, settings, show=not as_json)
    invalid = [line for line in lines if not line.valid]
    if as_json:
        door.emit(
            {
                "valid": not invalid,
                "lines": [
                    {
                        "line": line.number,
                        "job_id": line.job_id,
                        "valid": line.valid,
                        "problems": [_problem_json(p) for p in line.problems],
                    }
                    for line in lines
                ],
            }
        )
    else:
        for line in lines:
            if line.valid:
                click.echo(f"{file.name}:{line.number}: valid: job {line.job_id}")
            for problem in line.problems:
                click.secho(f"{file.name}:{line.number}: {problem}", fg="red")
        verdict = f"{len(lines) - len(invalid)} valid, {len(invalid)} invalid line(s)"
        click.secho(verdict, fg="red" if invalid else "green")
    sys.exit(door.EXIT_INVALID if invalid else 0)


@click.command()
def schema() -> None:
    """Print the JSON Schema of the job message."""
    door.emit(job_json_schema())
