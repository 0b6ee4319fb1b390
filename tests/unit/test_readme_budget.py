"""The manual's retry budget (docs/operations.md) quotes the numbers the code really uses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kolors_tryon.config import ENV_PREFIX, Settings, defaults

README = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
HEADING = "Timeouts and the retry budget"

# "`TRYON_A` (2 s)", "`(TRYON_A, TRYON_B)` = (5 s, 30 s)", "`TRYON_A`, 1 s,": the names in
# one code span, then the numbers they are quoted with, in the same order.
QUOTE = re.compile(
    r"`\(?(?P<names>TRYON_\w+(?:, TRYON_\w+)*)\)?`(?: = \(|,? \(|, )"
    r"(?P<numbers>\d+(?:\.\d+)?(?: s)?(?:, \d+(?:\.\d+)?(?: s)?)*)"
)


def _paragraph() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(HEADING)
    end = text.find("\n\n", start)
    return " ".join(text[start:end].split())


def _quotes() -> dict[str, float]:
    quoted: dict[str, float] = {}
    for match in QUOTE.finditer(_paragraph()):
        names = match["names"].split(", ")
        numbers = [float(n.removesuffix(" s")) for n in match["numbers"].split(", ")]
        assert len(names) == len(numbers), match.group(0)
        quoted.update(zip(names, numbers, strict=True))
    return quoted


def test_every_variable_in_the_budget_has_its_number_quoted() -> None:
    """No TRYON_ variable in the paragraph goes unchecked for want of a parsable number."""
    assert set(re.findall(r"TRYON_\w+", _paragraph())) == set(_quotes())


@pytest.mark.parametrize("variable", sorted(_quotes()))
def test_the_quoted_number_is_the_settings_default(variable: str) -> None:
    """The README quotes each variable with the default Settings really have."""
    field = variable.removeprefix(ENV_PREFIX).lower()
    assert _quotes()[variable] == Settings.model_fields[field].default


@pytest.mark.parametrize(
    ("phrase", "values"),
    [
        ("to 60 s", (defaults.BUSY_BACKOFF_CAP,)),
        (
            "from 1 s to 30 s",
            (defaults.TASK_FAILURE_BACKOFF_BASE, defaults.TASK_FAILURE_BACKOFF_CAP),
        ),
    ],
)
def test_the_fixed_numbers_match_the_defaults(phrase: str, values: tuple[float, ...]) -> None:
    """The budget's numbers that are not settings are the constants the code uses."""
    assert phrase in _paragraph()
    assert re.findall(r"\d+(?:\.\d+)? s", phrase)[-len(values) :] == [f"{v:g} s" for v in values]
