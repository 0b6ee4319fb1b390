"""The account's remaining units: read now and then, exposed, and warned about in time.

`GET /account/costs` is free but limited to about one request a second per account, so
each worker's main process reads it every `account_check_interval` seconds (a thread,
like the sweep timer), sets `tryon_account_units_remaining{pack}` and logs a warning
while the active packs hold fewer than `units_warn_below` units: a pack that runs out
pauses every submission (1102), so someone must hear of it before. An API without the
endpoint (resellers) reads as unknown: logged once, never an error.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from kolors_tryon.config import Settings
from kolors_tryon.config.accounts import account_pool
from kolors_tryon.kling import KlingClient, KlingError
from kolors_tryon.kling.account import AccountCosts
from kolors_tryon.kling.auth import auth_from_account
from kolors_tryon.observe import metrics

__all__ = ["AccountReading", "AccountWatcher", "read_account"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AccountReading:
    """One reading: the packs (None: this API does not say), and what it means."""

    costs: AccountCosts | None
    warn_below: float

    @property
    def known(self) -> bool:
        return self.costs is not None

    @property
    def low(self) -> bool:
        """Fewer units left than the warning threshold."""
        return self.costs is not None and self.costs.remaining < self.warn_below

    def describe(self) -> str:
        if self.costs is None:
            return "remaining units unknown: this API does not offer GET /account/costs"
        packs = ", ".join(
            f"{p.name}: {p.remaining:g}"
            + (f" of {p.total:g}" if p.total is not None else "")
            + (f" ({p.status})" if p.status else "")
            for p in self.costs.packs
        )
        text = f"{self.costs.remaining:g} units left ({packs or 'no packs'})"
        if self.low:
            text += f"; below TRYON_UNITS_WARN_BELOW={self.warn_below:g}: buy the next pack"
        return text


def read_account(client: KlingClient, settings: Settings) -> AccountReading:
    """Read the packs once, record them as metrics, and warn when they run low.

    Raises:
        KlingError: The API refused or failed the call (not: it lacks the endpoint).
    """
    reading = AccountReading(client.account_costs(), settings.units_warn_below)
    if reading.costs is not None:
        for pack in reading.costs.packs:
            metrics.account_units(pack.name, pack.remaining, pack.total)
    if reading.low:
        log.warning("the Kling account is running out: %s", reading.describe())
    return reading


class AccountWatcher:
    """Reads the account every `account_check_interval` seconds until stopped."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tryon-account", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _clients(self) -> dict[str, KlingClient]:
        """One client per account: the single account's, or each of a pool's."""
        settings = self._settings
        if not settings.kling_accounts:
            return {"default": KlingClient.from_settings(settings)}
        return {
            a.name: KlingClient(
                a.base_url,
                auth_from_account(a, jwt_lifetime=settings.kling_jwt_lifetime),
                timeout=settings.http_timeout,
                read_attempts=settings.http_attempts,
            )
            for a in account_pool(settings)
        }

    def _run(self) -> None:
        said_unknown: set[str] = set()
        clients = self._clients()
        try:
            while True:
                for name, client in clients.items():
                    try:
                        reading = read_account(client, self._settings)
                        if not reading.known and name not in said_unknown:
                            log.info("Kling account %s: %s", name, reading.describe())
                            said_unknown.add(name)
                    except KlingError as err:
                        log.warning("could not read Kling account %s's units: %s", name, err)
                    except Exception:
                        log.exception("reading Kling account %s's units failed", name)
                if self._stop.wait(self._settings.account_check_interval):
                    return
        finally:
            for client in clients.values():
                client.close()
