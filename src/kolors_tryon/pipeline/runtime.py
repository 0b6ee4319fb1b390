"""Everything a pipeline step needs, built once per process from Settings."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property

from kolors_tryon.config import Settings
from kolors_tryon.jobs import ValidationOptions
from kolors_tryon.kling import KlingClient
from kolors_tryon.pipeline.callback_tokens import CallbackSecrets, callback_secrets, callback_url
from kolors_tryon.pipeline.pool import AccountRemoved, client_for, is_pooled, pool_of, slots_of
from kolors_tryon.pipeline.storage import ResultCopies
from kolors_tryon.store import JobStore
from kolors_tryon.store.accounts import AccountSlots


@dataclass
class Runtime:
    """The settings, the job store, the Kling client and a plain HTTP session.

    Time comes from the store (`store.now()`: the database's clock, or the clock a test
    injected into the store), never from this process, so that workers agree on it.

    Build it after a fork (connection pools must not be shared between processes):
    the worker does so lazily, once per pool process.
    """

    settings: Settings
    store: JobStore
    kling: KlingClient
    rng: random.Random = field(default_factory=random.Random)
    _callback_secrets: CallbackSecrets | None = field(default=None, init=False, repr=False)
    # The pool's clients, one per account, built on first use (pipeline/pool.py).
    _clients: dict[str, KlingClient] = field(default_factory=dict, init=False, repr=False)
    _slots: tuple[AccountSlots, ...] | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        return cls(
            settings=settings,
            store=JobStore.from_url(settings.effective_database_url),
            kling=KlingClient.from_settings(settings),
        )

    @cached_property
    def copies(self) -> ResultCopies:
        """Where result copies go (built on first use: boto3 only when a bucket is set)."""
        return ResultCopies(self.settings)

    @property
    def validation_options(self) -> ValidationOptions:
        return ValidationOptions.from_settings(self.settings)

    @property
    def pooled(self) -> bool:
        """Whether a pool of accounts is configured (`TRYON_KLING_ACCOUNTS`)."""
        return is_pooled(self.settings)

    def kling_for(self, account: str) -> KlingClient:
        """The client of the job's account: every call after a claim goes to it alone.

        Raises:
            AccountRemoved: the account left the configuration (its credentials too).
        """
        if not self.pooled:
            return self.kling
        client = self._clients.get(account)
        if client is None:
            found = [a for a in pool_of(self.settings) if a.name == account]
            if not found:
                raise AccountRemoved(account)
            client = self._clients[account] = client_for(self.settings, found[0])
        return client

    def pool_slots(self) -> tuple[AccountSlots, ...]:
        """Each account's limit and rules, for dispatch; their pause rows made once."""
        if self._slots is None:
            slots = slots_of(pool_of(self.settings))
            self.store.pool.ensure_rows([s.name for s in slots])
            self._slots = slots
        return self._slots

    def kling_callback_url(self, job_id: str, account: str | None = None) -> str | None:
        """The `callback_url` our creates carry (None when callbacks are off); with a
        pool it names the job's account, so the callback is checked against it."""
        public_url = self.settings.public_url
        if public_url is None:
            return None
        if self._callback_secrets is None:  # read once: it changes only with a restart
            self._callback_secrets = callback_secrets(self.settings, self.store)
        url = callback_url(public_url, job_id, self._callback_secrets.current)
        if self.pooled and account is not None:
            url += f"?account={account}"
        return url

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self.kling.close()
        self.store.dispose()
