"""The account's resource packs, as `GET /account/costs` lists them (KLING_API.md "Account").

The official answer nests a second code/msg pair inside `data`:
`{"code": 0, "msg": "", "resource_pack_subscribe_infos": [{resource_pack_name,
resource_pack_type, total_quantity, remaining_quantity, status, invalid_time, ...}]}`.
Quantities may come as numbers or numeric strings; resellers may omit the endpoint, so
anything unreadable makes the reading *unknown* (None), never an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["AccountCosts", "ResourcePack", "parse_account_costs"]

# Packs that no longer (or not yet) give units: their remainder is not spendable.
_INACTIVE = frozenset({"expired", "runout", "run_out", "tobeonline", "offline"})


@dataclass(frozen=True)
class ResourcePack:
    """One resource pack: its name, status and quantities (None when not given)."""

    name: str
    status: str | None
    remaining: float
    total: float | None

    @property
    def active(self) -> bool:
        """The pack's units can be spent now (online, or a status we do not know)."""
        status = (self.status or "").replace("-", "").lower()
        return status not in _INACTIVE


@dataclass(frozen=True)
class AccountCosts:
    """The account's packs; `remaining` sums the units of the active ones."""

    packs: tuple[ResourcePack, ...]

    @property
    def remaining(self) -> float:
        return sum(pack.remaining for pack in self.packs if pack.active)


def parse_account_costs(data: object) -> AccountCosts | None:
    """The packs of an answer's `data`, or None when it is not a list of packs."""
    if not isinstance(data, Mapping):
        return None
    inner = data.get("resource_pack_subscribe_infos")
    if inner is None and isinstance(data.get("data"), Mapping):
        inner = data["data"].get("resource_pack_subscribe_infos")
    if not isinstance(inner, list):
        return None
    packs = []
    for i, item in enumerate(inner):
        if not isinstance(item, Mapping):
            continue
        remaining = _number(item.get("remaining_quantity"))
        if remaining is None:
            continue
        name = item.get("resource_pack_name") or item.get("resource_pack_id") or f"pack-{i}"
        status = item.get("status")
        packs.append(
            ResourcePack(
                name=str(name)[:100],
                status=str(status) if status is not None else None,
                remaining=remaining,
                total=_number(item.get("total_quantity")),
            )
        )
    return AccountCosts(tuple(packs))


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, int | float | str) else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None
