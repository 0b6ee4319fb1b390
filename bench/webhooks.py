"""Webhook delivery: deliveries per second to a local receiver, and the delay from a job's
end to its webhook (p50/p99).

Not measured yet: signed webhooks to producers (`tryon.webhook`) are being built on
another branch; this benchmark is written against them once they are on main.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

NAME = "webhooks"


@dataclass(frozen=True)
class Sizes:
    """Jobs whose webhooks are delivered."""

    jobs: int


FULL = Sizes(jobs=200)
QUICK = Sizes(jobs=30)
TINY = Sizes(jobs=5)


def run(sizes: Sizes, out_dir: Path, tmp: Path) -> dict[str, Any]:
    """Nothing to measure until webhook delivery exists on main (said so, not faked)."""
    figures: dict[str, Any] = {"measured": False, "why": "no tryon.webhook delivery on main yet"}
    print(f"BENCH {NAME}: skipped ({figures['why']})", flush=True)
    return figures
