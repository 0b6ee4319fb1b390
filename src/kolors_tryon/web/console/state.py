"""What the console's routes share: its users, session signer, throttle and store reads,
and the announcement of a review (event and webhook) on the service's broker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kolors_tryon.config import Settings
from kolors_tryon.config.celery import topology_for
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.store import AccountPause, JobStore
from kolors_tryon.store.console_reads import ConsoleReads
from kolors_tryon.store.reviews import Reviewed
from kolors_tryon.web.console.sessions import SessionSigner
from kolors_tryon.web.console.throttle import LoginThrottle
from kolors_tryon.web.console.users import ConsoleUser
from kolors_tryon.web.services import WebServices

__all__ = ["AccountView", "Console", "announce_review"]

log = logging.getLogger("kolors_tryon.web.console")

#: Routing key of the event a review publishes on `<ns>.events`.
REVIEWED_ROUTING_KEY = "job.reviewed"


@dataclass(frozen=True)
class AccountView:
    """Today's single Kling account as the console shows it (issue 20 makes it a list)."""

    name: str
    slots_in_use: int
    slots: int
    pause: AccountPause | None
    sandbox: bool


class Console:
    """The console of one `tryon web` app (built once, shared by every request)."""

    def __init__(
        self, settings: Settings, services: WebServices, users: dict[str, ConsoleUser]
    ) -> None:
        assert settings.console_secret is not None  # load_users refuses users without it
        self.settings = settings
        self.services = services
        self.users = users
        self.signer = SessionSigner(
            settings.console_secret.get_secret_value(), secure=settings.console_secure_cookies
        )
        self.throttle = LoginThrottle()
        self.reads = ConsoleReads(services.store.engine)

    @property
    def store(self) -> JobStore:
        self.services.ensure_schema()
        return self.services.store

    def account(self) -> AccountView:
        store = self.store
        return AccountView(
            name="default",
            slots_in_use=store.jobs.in_flight(),
            slots=self.settings.max_in_flight,
            pause=store.account.current_pause(),
            sandbox=self.settings.sandbox,
        )


def announce_review(console: Console, reviewed: Reviewed) -> None:
    """Publish `job.reviewed` and send the webhook's message, as state changes are.

    The delivery row is already written (`store.reviews`): a message lost here is sent by
    the sweep. The event is a notification: a failure is logged, the verdict stays.
    """
    settings = console.settings
    celery = console.services.celery
    if settings.uses_rabbitmq:
        exchange = topology_for(settings).events_exchange
        try:
            with celery.producer_pool.acquire(block=True) as producer:
                producer.publish(
                    reviewed.body,
                    exchange=exchange,
                    routing_key=REVIEWED_ROUTING_KEY,
                    serializer="json",
                    delivery_mode=2,
                    declare=[exchange],
                    retry=True,
                )
        except Exception:
            log.exception("could not publish job.reviewed of %s", reviewed.record.job_id)
    if reviewed.delivery is not None:
        try:
            celery.send_task(TaskName.WEBHOOK, args=[reviewed.delivery])
        except Exception:
            log.exception("could not send webhook %s; the sweep will", reviewed.delivery)
