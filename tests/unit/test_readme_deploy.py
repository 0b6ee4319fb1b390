"""The README's deployment words match what the deployment does (issue 17, point 11)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {title}\n")
    following = re.search(r"^## ", text[start + 3 :], re.MULTILINE)
    return text[start : start + 3 + following.start()] if following else text[start:]


def test_running_it_for_real_upgrades_the_store_before_the_worker() -> None:
    """The commands migrate the store (`tryon db upgrade`) before starting a worker."""
    text = section("Running it for real")
    assert text.index("tryon db upgrade") < text.index("tryon worker --concurrency")


def test_running_it_for_real_says_no_credentials_means_sandbox_mode() -> None:
    """Without Kling credentials the worker runs in sandbox mode: the README says so."""
    text = section("Running it for real")
    assert "sandbox mode" in text and "SANDBOX MODE" in text
    assert "TRYON_SANDBOX_EMULATOR_URL" in text


def test_readme_says_how_long_make_test_takes_and_how_it_stops() -> None:
    """`make test`'s duration is stated, and that SIGTERM/SIGINT tear everything down."""
    text = (README.parent / "docs" / "development.md").read_text(encoding="utf-8")
    assert re.search(r"`make test` takes about \d+ minutes", text)
    assert "SIGTERM" in text and "SIGINT" in text


def test_the_words_on_the_callback_secret_match_the_code() -> None:
    """Without TRYON_CALLBACK_SECRET callbacks work on a generated secret: no page says
    they are refused, and the reference says where the secret comes from."""
    root = README.parent
    pages = [README, *sorted((root / "docs").glob("*.md"))]
    for page in pages:
        assert "callbacks refused" not in page.read_text(encoding="utf-8"), page
    reference = (root / "docs" / "configuration.md").read_text(encoding="utf-8")
    (row,) = [line for line in reference.splitlines() if "`TRYON_CALLBACK_SECRET`" in line]
    assert "generated once and kept in the store" in row
