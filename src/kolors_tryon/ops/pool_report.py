"""`tryon accounts`: each account of the pool as an operator needs to see it.

Slots in use, pause and why, units spent (the sum of the tasks' `final_unit_deduction`:
the live count), units today against a daily budget, jobs created, and the remaining
units `GET /account/costs` reports, marked as lagging (KLING_API.md: up to 12 hours
behind) and "unknown" where the API does not offer it.
"""

from __future__ import annotations

from typing import Any

from kolors_tryon.config import Settings
from kolors_tryon.config.accounts import KlingAccount, account_pool
from kolors_tryon.kling import KlingClient, KlingError, redact
from kolors_tryon.kling.auth import auth_from_account
from kolors_tryon.ops.health import Check, Status
from kolors_tryon.store import JobStore

__all__ = ["check_pool", "describe_accounts", "pool_report"]

# The API's own words on its remaining quantity, shown beside it.
REMAINING_LAG = "from GET /account/costs, may lag by up to 12 h"


def _client(settings: Settings, account: KlingAccount) -> KlingClient:
    return KlingClient(
        account.base_url,
        auth_from_account(account, jwt_lifetime=settings.kling_jwt_lifetime),
        timeout=settings.http_timeout,
        read_attempts=1,
    )


def check_pool(settings: Settings) -> Check:
    """`tryon health` with a pool: every account answers an authenticated list call (FAIL
    when none does, WARN when some do not), and none is paused (WARN)."""
    store = JobStore.from_url(settings.effective_database_url)
    try:
        rows = pool_report(settings, store, remote=False)
    finally:
        store.dispose()
    refused: dict[str, str] = {}
    for account in account_pool(settings):
        try:
            with _client(settings, account) as client:
                client.list(page_num=1, page_size=1)
        except KlingError as err:
            refused[account.name] = str(err)
    paused = [r["name"] for r in rows if r["paused"]]
    parts = [f"{r['name']} {r['in_flight']}/{r['max_in_flight']}" for r in rows]
    detail = f"{len(rows)} accounts, slots in use: {', '.join(parts)}"
    if paused:
        detail += f"; PAUSED: {', '.join(paused)}"
    if refused:
        detail += "; API refused: " + "; ".join(f"{n}: {e}" for n, e in refused.items())
    status = Status.OK
    if paused or refused:
        status = Status.FAIL if len(refused) == len(rows) else Status.WARN
    return Check("accounts", status, detail, {"accounts": rows, "refused": refused})


def _remaining(settings: Settings, account: KlingAccount) -> float | None:
    """Remaining units by the API (None: not offered, or the call failed)."""
    try:
        with _client(settings, account) as client:
            costs = client.account_costs()
    except KlingError:
        return None
    return None if costs is None else costs.remaining


def pool_report(
    settings: Settings, store: JobStore, *, remote: bool = True
) -> list[dict[str, Any]]:
    """One JSON-able object per account of the pool (`tryon accounts --json`)."""
    accounts = account_pool(settings)
    usage = {u.name: u for u in store.pool.usage([a.name for a in accounts])}
    rows = []
    for account in accounts:
        used = usage[account.name]
        pause = used.pause
        rows.append(
            {
                "name": account.name,
                "base_url": redact(account.base_url),
                "max_in_flight": account.max_in_flight,
                "in_flight": used.in_flight,
                "paused": pause is not None,
                "pause": None
                if pause is None
                else {"code": pause.code, "message": pause.message, "probe_in": pause.remaining},
                "retired": account.retired,
                "jobs_created": used.created,
                "units_spent": used.units_spent,
                "units_today": used.units_today,
                "daily_units": account.daily_units,
                "units_remaining": _remaining(settings, account) if remote else None,
                "units_remaining_source": REMAINING_LAG if remote else "not read",
            }
        )
    return rows


def describe_accounts(rows: list[dict[str, Any]]) -> str:
    """The report as text, one block per account."""
    lines = []
    for row in rows:
        state = "retired" if row["retired"] else "active"
        if row["paused"]:
            state = f"PAUSED ({row['pause']['code']}: {row['pause']['message']})"
        budget = f" of {row['daily_units']:g}" if row["daily_units"] is not None else ""
        remaining = row["units_remaining"]
        left = (
            "unknown" if remaining is None else f"{remaining:g} ({row['units_remaining_source']})"
        )
        lines += [
            f"{row['name']}: {state}, {row['base_url']}",
            f"  slots {row['in_flight']} of {row['max_in_flight']} in use; "
            f"{row['jobs_created']} jobs created",
            f"  units spent {row['units_spent']:g} (today {row['units_today']:g}{budget}); "
            f"remaining {left}",
        ]
    return "\n".join(lines)
