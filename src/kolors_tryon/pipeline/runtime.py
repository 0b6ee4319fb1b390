"""Everything a pipeline step needs, built once per process from Settings."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property

from kolors_tryon.config import Settings
from kolors_tryon.jobs import ValidationOptions
from kolors_tryon.kling import KlingClient
from kolors_tryon.pipeline.callback_tokens import CallbackSecrets, callback_secrets, callback_url
from kolors_tryon.pipeline.storage import ResultCopies
from kolors_tryon.store import JobStore


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

    def kling_callback_url(self, job_id: str) -> str | None:
        """The `callback_url` our creates carry (None when callbacks are off)."""
        public_url = self.settings.public_url
        if public_url is None:
            return None
        if self._callback_secrets is None:  # read once: it changes only with a restart
            self._callback_secrets = callback_secrets(self.settings, self.store)
        return callback_url(public_url, job_id, self._callback_secrets.current)

    def close(self) -> None:
        self.kling.close()
        self.store.dispose()
