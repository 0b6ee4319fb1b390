"""The Celery configuration and the broker topology, built from Settings.

Every name users and operators rely on is derived here from `settings.namespace`
(default `tryon`): the public intake queue `tryon.jobs`, the events exchange
`tryon.events`, the internal task queues, and the dead-letter exchange and queue
`tryon.dlx` / `tryon.dead`.

Internal work runs on four queues, so that no kind of work waits behind another in one
FIFO line: `tryon.intake` (validating and recording incoming jobs: a backlog of thousands
lives here), `tryon.tasks` (submit, dispatch, sweep: what turns free slots into creates),
`tryon.track` (following submitted tasks) and `tryon.webhooks` (deliveries to producers:
a job's webhook must not wait behind every submit and result copy queued before it). A
worker consumes all four, and RabbitMQ hands each consumer its turn, so a backlog of
intake never keeps a freed slot idle, a finished task unrecorded or a webhook late. The
webhooks queue is consumed by the worker's delivery lane (`worker/delivery_lane.py`),
not its pool, so that receivers that hang hold no process intake and submits need.

On RabbitMQ every queue is a durable quorum queue with a dead-letter exchange and a
delivery limit (a message that kills its worker every time ends in `tryon.dead`), and
task queues hang off a *topic* exchange: Celery's native delayed delivery needs one, so
countdowns wait in RabbitMQ instead of in a worker's memory (STACK_NOTES.md).
Changing these arguments on a live broker needs the old queues deleted first: RabbitMQ
refuses to redeclare a queue with other arguments (see README, "Upgrading topology").

Deployments with different namespaces may share a vhost. Celery's delayed-delivery
exchanges are not theirs: one set per vhost (`celery_delayed_0..27`, then
`celery_delayed_delivery`), and every task exchange is bound to the last one with
`#.<its queues' routing keys>`. So the routing keys name the namespace
(`q.<queue>.<namespace>`): a delayed message (a retry, a poll, a wait, an intake put off
by a store outage, carrying the job itself) comes out only into its own deployment's
queues. A delayed message whose deployment has gone (its queues deleted while it waited)
then matches no binding, and the delayed queues' at-least-once dead-lettering would keep
it for ever and, enough of them, stop releasing anyone's messages; the discard queue
(`delayed_discard_queue`) gives every such message a route that drops it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kombu import Exchange, Queue
from kombu.transport.native_delayed_delivery import CELERY_DELAYED_DELIVERY_EXCHANGE

from kolors_tryon.config import embedded_broker
from kolors_tryon.config.settings import Settings
from kolors_tryon.config.task_names import TaskName

# How long a publish keeps trying while the broker is away: about 25 s, then it raises.
PUBLISH_RETRY_POLICY: dict[str, float] = {
    "max_retries": 10,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 3,
}
# Which queue each task runs on: the queue's short name. The routing key of each queue
# is `q.<short name>.<namespace>` (`Topology.routing_key`): it must not start with
# `task.`, the binding of an older topology, and it ends with the namespace so that no
# other deployment's binding to Celery's shared delayed-delivery exchange matches it:
# neither `#.q.<short>.<other namespace>` nor the older releases' `#.q.<short>`.
TASK_QUEUES: dict[TaskName, str] = {
    TaskName.INTAKE: "intake",
    TaskName.SUBMIT: "tasks",
    TaskName.SUBMIT_BATCH: "tasks",
    TaskName.DISPATCH: "tasks",
    TaskName.SWEEP: "tasks",
    TaskName.RECOVER: "tasks",
    TaskName.CALLBACK: "tasks",
    TaskName.COPY_RESULTS: "tasks",
    TaskName.CANCELLED: "tasks",
    TaskName.WEBHOOK: "webhooks",
    TaskName.TRACK: "track",
    TaskName.TRACK_BATCH: "track",
}


@dataclass(frozen=True)
class Topology:
    """Exchanges and queues of one namespace."""

    namespace: str
    quorum: bool
    delivery_limit: int

    @property
    def jobs_queue_name(self) -> str:
        return f"{self.namespace}.jobs"

    @property
    def tasks_queue_name(self) -> str:
        return f"{self.namespace}.tasks"

    def task_queue_name(self, short: str) -> str:
        return f"{self.namespace}.{short}"

    @property
    def events_exchange(self) -> Exchange:
        return Exchange(f"{self.namespace}.events", type="topic", durable=True)

    @property
    def task_exchange(self) -> Exchange:
        return Exchange(self.namespace, type="topic", durable=True)

    @property
    def dead_letter_exchange(self) -> Exchange:
        return Exchange(f"{self.namespace}.dlx", type="topic", durable=True)

    def _arguments(self) -> dict[str, Any]:
        if not self.quorum:
            return {}
        return {
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": f"{self.namespace}.dlx",
            "x-delivery-limit": self.delivery_limit,
        }

    @property
    def jobs_queue(self) -> Queue:
        """The public door: plain JSON job messages, published to the default exchange."""
        return Queue(
            self.jobs_queue_name,
            routing_key=self.jobs_queue_name,
            durable=True,
            queue_arguments=self._arguments(),
        )

    def routing_key(self, short: str) -> str:
        """The routing key of internal queue `short`: unique to the namespace."""
        return f"q.{short}.{self.namespace}"

    def legacy_routing_key(self, short: str) -> str:
        """The key of the releases before namespaced keys: the same in every namespace."""
        return f"q.{short}"

    def task_queue(self, short: str) -> Queue:
        """One internal queue, bound to the topic exchange (native delayed delivery)."""
        return Queue(
            self.task_queue_name(short),
            exchange=self.task_exchange,
            routing_key=self.routing_key(short),
            durable=True,
            queue_arguments=self._arguments(),
        )

    @property
    def tasks_queue(self) -> Queue:
        return self.task_queue("tasks")

    @property
    def task_queues(self) -> list[Queue]:
        return [self.task_queue(short) for short in dict.fromkeys(TASK_QUEUES.values())]

    @property
    def dead_letter_queue(self) -> Queue:
        arguments = {"x-queue-type": "quorum"} if self.quorum else {}
        return Queue(
            f"{self.namespace}.dead",
            exchange=self.dead_letter_exchange,
            routing_key="#",
            durable=True,
            queue_arguments=arguments,
        )


# Where delayed messages with no other route end: a queue that keeps nothing. Shared by
# the vhost like the delayed-delivery exchanges it hangs off (every worker declares it
# alike; nobody deletes it). Bound with `#`, it takes a copy of every delayed message as
# it comes out, so that none is ever unroutable: RabbitMQ drops the copy at once
# (`x-max-length` 0), and the messages of a live deployment reach its queues as well.
DELAYED_DISCARD_QUEUE = "celery_delayed_discard"


def delayed_discard_queue() -> Queue:
    """The discard queue of the vhost's delayed-delivery exchange (see the module's doc)."""
    return Queue(
        DELAYED_DISCARD_QUEUE,
        exchange=Exchange(CELERY_DELAYED_DELIVERY_EXCHANGE, type="topic", durable=True),
        routing_key="#",
        durable=True,
        queue_arguments={"x-max-length": 0, "x-overflow": "drop-head"},
    )


def topology_for(settings: Settings) -> Topology:
    return Topology(
        namespace=settings.namespace,
        quorum=settings.uses_rabbitmq,
        delivery_limit=settings.delivery_limit,
    )


def route_for(settings: Settings, task_name: TaskName) -> dict[str, str]:
    """Where `task_name` goes: its queue and routing key."""
    topology = topology_for(settings)
    short = TASK_QUEUES[task_name]
    return {"queue": topology.task_queue_name(short), "routing_key": topology.routing_key(short)}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings: JSON only, late acks, prefetch one, persistent and confirmed."""
    topology = topology_for(settings)
    embedded_broker.register()
    transport_options: dict[str, Any]
    if settings.uses_rabbitmq:
        transport_options = {"confirm_publish": True}
    else:
        # The embedded transports poll; the default (1 s) makes every hop slow.
        transport_options = {
            "polling_interval": settings.broker_polling_interval,
            "visibility_timeout": settings.embedded_visibility_timeout,
        }
    routes = {name: route_for(settings, name) for name in TaskName}
    return {
        "broker_url": settings.effective_broker_url,
        "result_backend": settings.effective_result_backend,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_default_queue": topology.tasks_queue_name,
        "task_default_exchange": topology.namespace,
        "task_default_exchange_type": "topic",
        "task_default_routing_key": topology.routing_key("tasks"),
        "task_default_delivery_mode": "persistent",
        "task_queues": topology.task_queues,
        "task_routes": routes,
        "task_create_missing_queues": False,
        "task_publish_retry": True,
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        # Deleted by the sweep (no beat is deployed): see tasks/definitions.py.
        "result_expires": settings.result_expiry,
        "result_extended": False,
        # Task events for Flower (`tryon flower`): received/started/succeeded from the
        # workers, `sent` from whoever publishes a task. They go to the namespace's event
        # exchange below, where nobody's queue is bound unless a monitor runs, so RabbitMQ
        # drops them at once when none does. On the embedded broker exchange bindings live
        # in one process's memory (no monitor could see them): off there.
        "worker_send_task_events": settings.uses_rabbitmq,
        "task_send_sent_event": settings.uses_rabbitmq,
        # Remote control and events of one namespace: Celery names a worker's control
        # queue `<hostname>.<control_exchange>.pidbox` and holds it exclusively, so two
        # deployments on one vhost with the default name (`celery`) lock each other out.
        "control_exchange": f"{topology.namespace}.control",
        "event_exchange": f"{topology.namespace}.celeryev",
        "broker_channel_error_retry": True,
        "timezone": "UTC",
        "enable_utc": True,
    }
