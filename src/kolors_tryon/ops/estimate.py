"""What a batch will cost and take, before it is sent (`tryon batches estimate FILE`).

One try-on is one unit (KLING_API.md: `final_unit_deduction` "1"), priced at
TRYON_UNIT_PRICE; the account runs TRYON_MAX_IN_FLIGHT at once, each for about
`defaults.TYPICAL_TRYON_SECONDS`, so a batch takes about ceil(jobs / slots) of those.
An estimate, not a promise: Kling's task time varies (15-60 s), and jobs of other
producers share the slots.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from kolors_tryon.config import Settings, defaults

UNITS_PER_TRYON = 1.0


@dataclass(frozen=True)
class Estimate:
    jobs: int
    invalid: int
    units: float
    cost: float
    unit_price: float
    seconds: float
    max_in_flight: int

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(jobs: int, invalid: int, settings: Settings) -> Estimate:
    """The estimate for `jobs` valid jobs (the `invalid` ones cost nothing)."""
    units = jobs * UNITS_PER_TRYON
    rounds = math.ceil(jobs / settings.max_in_flight) if jobs else 0
    return Estimate(
        jobs=jobs,
        invalid=invalid,
        units=units,
        cost=round(units * settings.unit_price, 4),
        unit_price=settings.unit_price,
        seconds=rounds * defaults.TYPICAL_TRYON_SECONDS,
        max_in_flight=settings.max_in_flight,
    )
