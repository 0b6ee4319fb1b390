"""The delivery lane: webhook deliveries run beside the worker's pool, never in it.

A delivery waits on a producer's receiver, and a receiver may accept the connection and
never answer. In the Celery pool, each such attempt held one of the few processes that
intake, submits and Kling callbacks need: two receivers hanging 60 s delayed an
unrelated job's intake by 14 s (issue 16, point 6). So each worker consumes
`<ns>.webhooks` in a lane of its own, in its main process:

- one consumer thread, on a broker connection of its own, takes `tryon.webhook`
  messages (prefetch: the lane's size) and acks each once its attempt has ended;
- `TRYON_WEBHOOK_CONCURRENCY` threads (default 8) make the attempts, on a Runtime of
  their own (their own database connections), through the same code as the task
  (`tasks.webhooks.run_webhook`).

Hanging receivers can then hold at most the lane's threads, and what they hold up is
other deliveries only. Why threads, and not a second Celery worker or asyncio: an
attempt is I/O (a POST, two short transactions) that the existing blocking code already
does with its deadlines and its address pinning; threads inside `tryon worker` need no
second process to deploy, start, stop and monitor, and no second HTTP stack. Why not Celery's
own consumer with a thread pool: a worker has one pool, and the pool must stay prefork
for intake's CPU work (image checks).

What the pool guaranteed, the lane keeps: the message is the same Celery task message, so
its ack comes after the attempt is recorded (at least once: a worker that dies or loses
its connection mid-attempt leaves the message to RabbitMQ, which hands it out again, and
the attempt's fence in the store makes the next taker wait instead of POSTing twice);
the schedule, Retry-After and the counts are `pipeline.webhooks.deliver`'s, unchanged;
a message with an ETA (the embedded broker's countdowns) is held until it is due. A warm
stop gives the attempts under way `WEBHOOK_STOP_GRACE` (5 s), then lets them go: a deploy
never waits for receivers that hang, and their messages come back.
The Celery pool does not consume `<ns>.webhooks` any more: `DeliveryLaneStep` takes it
out of the worker's queues, and a worker told not to consume it (`-X`) has no lane.

A pool process forked after the lane has started (a replacement for one that died)
inherits the lane's objects and never uses them: tasks build their own Runtime per
process id (`tasks.runtime`).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime
from queue import Empty, SimpleQueue
from typing import Any

from celery import Celery, bootsteps
from kombu import Connection, Consumer, Message, Queue

from kolors_tryon.config import Settings, defaults
from kolors_tryon.config.backoff import backoff_delay
from kolors_tryon.config.celery import topology_for
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.errors import TryonError
from kolors_tryon.observe.context import job_context
from kolors_tryon.pipeline import Runtime
from kolors_tryon.tasks.runtime import settings_of
from kolors_tryon.tasks.webhooks import run_webhook

log = logging.getLogger(__name__)

#: The short name of the queue the lane consumes (`config.celery.TASK_QUEUES`).
LANE_QUEUE = "webhooks"
# How long the consumer thread sleeps in the broker's socket when nothing is in flight:
# a message wakes it at once; this only bounds how late a held (ETA) message or a stop
# is noticed, and keeps AMQP heartbeats going (Celery checks them about every second).
_IDLE_TICK = 1.0


class NotADelivery(TryonError, ValueError):
    """A message on the webhooks queue that is not a `tryon.webhook(delivery_id)` task."""


def parse_delivery(message: Message) -> tuple[str, int, datetime | None]:
    """The delivery id, the outage count and the ETA of a `tryon.webhook` message.

    Celery's task protocol 2: the task's name and ETA travel in the headers, the body is
    `[args, kwargs, embed]`.

    Raises:
        NotADelivery: anything else (it is parked, not retried: it never will be one).
    """
    headers = message.headers or {}
    if headers.get("task") != TaskName.WEBHOOK:
        raise NotADelivery(f"task {str(headers.get('task'))[:60]!r} is not {TaskName.WEBHOOK}")
    try:
        body = message.decode()
    except Exception as exc:
        raise NotADelivery(f"body does not decode ({type(exc).__name__})") from None
    if not (isinstance(body, list | tuple) and len(body) >= 2):
        raise NotADelivery("body is not [args, kwargs, embed]")
    args, kwargs = body[0], body[1]
    if not (isinstance(args, list) and args and isinstance(args[0], str)):
        raise NotADelivery("args is not [delivery_id]")
    outages = kwargs.get("outages", 0) if isinstance(kwargs, dict) else 0
    eta: datetime | None = None
    if headers.get("eta"):
        try:
            eta = datetime.fromisoformat(str(headers["eta"]))
        except ValueError:
            raise NotADelivery("eta is not an ISO 8601 time") from None
        if eta.tzinfo is None:
            eta = eta.replace(tzinfo=UTC)
    return args[0], int(outages) if isinstance(outages, int) else 0, eta


class DeliveryLane:
    """Consumes one webhooks queue and makes at most `concurrency` attempts at once."""

    def __init__(self, app: Celery, settings: Settings, queue: Queue) -> None:
        self.app = app
        self.settings = settings
        self.queue = queue
        self.concurrency = settings.webhook_concurrency
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tryon-webhooks", daemon=True)
        # Daemon threads of our own, not a ThreadPoolExecutor: the interpreter joins an
        # executor's threads at exit, so a stopping worker would wait for every receiver
        # that hangs (30 s with a read timeout of 30 s, measured).
        self._work: SimpleQueue[tuple[int, Message, str, int] | None] = SimpleQueue()
        self._workers = [
            threading.Thread(target=self._work_loop, name=f"tryon-webhook-{n}", daemon=True)
            for n in range(self.concurrency)
        ]
        self._runtime: Runtime | None = None
        # Filled by the attempt threads, emptied by the consumer thread: only the thread
        # that owns a channel may ack on it (AMQP channels are not thread-safe).
        self._finished: SimpleQueue[tuple[int, Message]] = SimpleQueue()
        self._generation = 0  # a new connection starts a new one; older acks are void
        self._ready: deque[tuple[Message, str, int]] = deque()
        self._held: list[tuple[datetime, int, Message, str, int]] = []  # a heap by ETA
        self._order = itertools.count()  # ties in the heap never compare messages
        self._in_flight = 0
        self._prefetch = 0
        self._grace = defaults.WEBHOOK_STOP_GRACE
        self._failures = 0  # connection failures in a row (the backoff's exponent)

    # ----------------------------------------------------------------- lifecycle -----
    def start(self) -> None:
        # Built here, in the main process, after the pool has forked its processes.
        self._runtime = Runtime.from_settings(self.settings)
        for worker in self._workers:
            worker.start()
        self._thread.start()
        log.info(
            "webhook deliveries: %d at a time, apart from the pool (%s)",
            self.concurrency,
            self.queue.name,
        )

    def stop(self, grace: float = defaults.WEBHOOK_STOP_GRACE) -> None:
        """Stop taking messages; give attempts under way `grace` s; then let go.

        An attempt still running after that keeps its thread (a daemon: it ends with
        the process) and its message goes back to the queue when the connection
        closes; the attempt's fence keeps the next taker from POSTing at the same time.
        """
        self._grace = grace
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=grace + 5)
        for _ in self._workers:
            self._work.put(None)  # each idle thread ends; busy ones end with the process
        if self._in_flight == 0 and self._runtime is not None:
            self._runtime.close()

    # ------------------------------------------------------------ consumer thread -----
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._consume()
                return
            except Exception as exc:
                # The connection broke (the broker restarted, a network blip): messages
                # not acked go back to the queue by themselves; acks of the old
                # connection's messages would fail, so they are dropped.
                self._generation += 1
                self._ready.clear()
                self._held.clear()
                self._prefetch = 0
                wait = backoff_delay(
                    self._failures,
                    base=defaults.OUTAGE_BACKOFF_BASE,
                    cap=self.settings.outage_retry_max,
                )
                self._failures += 1
                log.warning(
                    "webhook deliveries: the broker connection failed (%s); again in %.1f s",
                    type(exc).__name__,
                    wait,
                )
                self._stop.wait(wait)

    def _consume(self) -> None:
        connection: Connection = self.app.connection_for_read(
            heartbeat=self.app.conf.broker_heartbeat
        )
        with connection:
            connection.ensure_connection(max_retries=1)
            self._failures = 0  # connected: the next failure waits from the start again
            consumer = Consumer(
                connection.channel(),
                queues=[self.queue],
                on_message=self._on_message,
                no_ack=False,
                accept=["json"],  # never pickle: the body is decoded by the lane itself
            )
            generation = self._generation
            with consumer:
                self._set_prefetch(consumer)
                while not self._stop.is_set():
                    self._turn(consumer, generation)
                    self._wait_for_events(connection)
            # Cancelled: no new message comes; the attempts under way get their grace.
            deadline = time.monotonic() + self._grace
            while self._in_flight and time.monotonic() < deadline:
                self._settle(generation, timeout=defaults.WEBHOOK_LANE_TICK)
            self._settle(generation, timeout=0)
            if self._in_flight:
                log.warning(
                    "webhook deliveries: %d attempt(s) still under way at stop; their "
                    "messages go back to the queue",
                    self._in_flight,
                )

    def _turn(self, consumer: Consumer, generation: int) -> None:
        """Ack what finished, start what is due, and size the prefetch to match."""
        self._settle(generation, timeout=0)
        now = datetime.now(UTC)
        while self._held and self._held[0][0] <= now:
            _, _, message, delivery_id, outages = heapq.heappop(self._held)
            self._ready.append((message, delivery_id, outages))
        while self._ready and self._in_flight < self.concurrency:
            message, delivery_id, outages = self._ready.popleft()
            self._in_flight += 1
            self._work.put((generation, message, delivery_id, outages))
        self._set_prefetch(consumer)

    def _set_prefetch(self, consumer: Consumer) -> None:
        """As many unacked messages as threads, plus those held for their ETA (as
        Celery does): held messages must not keep due ones from coming."""
        wanted = self.concurrency + len(self._held)
        if wanted != self._prefetch:
            consumer.qos(prefetch_count=wanted)
            self._prefetch = wanted

    def _wait_for_events(self, connection: Connection) -> None:
        timeout = defaults.WEBHOOK_LANE_TICK if (self._in_flight or self._ready) else _IDLE_TICK
        if self._held:
            due_in = (self._held[0][0] - datetime.now(UTC)).total_seconds()
            timeout = min(timeout, max(due_in, 0.0))
        with contextlib.suppress(TimeoutError):  # nothing came: the loop goes round
            connection.drain_events(timeout=timeout)
        connection.heartbeat_check()

    def _on_message(self, message: Message) -> None:
        try:
            delivery_id, outages, eta = parse_delivery(message)
        except NotADelivery as exc:
            # Dead-lettered to `<ns>.dead` (the queue's dead-letter exchange), reason logged.
            log.error("webhook deliveries: parked a message that is not one: %s", exc)
            message.reject(requeue=False)
            return
        if eta is not None and eta > datetime.now(UTC):
            heapq.heappush(self._held, (eta, next(self._order), message, delivery_id, outages))
            return
        self._ready.append((message, delivery_id, outages))

    def _settle(self, generation: int, timeout: float) -> None:
        """Ack the messages of finished attempts (waiting up to `timeout` s for one)."""
        while True:
            try:
                if timeout:
                    finished, message = self._finished.get(timeout=timeout)
                else:
                    finished, message = self._finished.get_nowait()
            except Empty:
                return
            timeout = 0
            self._in_flight -= 1
            if finished != generation:
                continue  # its connection is gone: RabbitMQ has put it back already
            try:
                message.ack()
            except Exception as exc:
                log.warning("webhook deliveries: could not ack (%s); it comes again", exc)

    # ----------------------------------------------------------- attempt threads -----
    def _work_loop(self) -> None:
        while (item := self._work.get()) is not None:
            generation, message, delivery_id, outages = item
            try:
                self._attempt(delivery_id, outages)
            finally:
                self._finished.put((generation, message))

    def _attempt(self, delivery_id: str, outages: int) -> None:
        runtime = self._runtime
        assert runtime is not None  # start() built it before the first message
        # The pool's `task_prerun` named the delivery this way: keep log lines alike.
        with job_context(delivery_id):
            try:
                run_webhook(self.app, runtime, delivery_id, outages)
            except Exception:
                # A bug, not a receiver's failure: the delivery stays pending and the
                # sweep sends its message again once its fence has passed.
                log.exception("webhook %s: the attempt broke; the sweep retries it", delivery_id)


class DeliveryLaneStep(bootsteps.StartStopStep):
    """The worker's bootstep: takes `<ns>.webhooks` from the pool and gives it a lane.

    Runs after the pool has started (so its processes are forked before the lane's
    threads exist) and stops after the consumer of the pool's queues, so a warm stop
    first stops taking work and then lets the lane's attempts finish.
    """

    requires = ("celery.worker.components:Pool",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        app: Celery = parent.app
        settings = settings_of(app)
        queue = topology_for(settings).task_queue(LANE_QUEUE)
        queues = app.amqp.queues
        self.lane: DeliveryLane | None = None
        # The queues the worker will consume were chosen already (`-Q`, `-X`): a worker
        # that would consume the webhooks queue consumes it in its lane instead.
        if queue.name in queues.consume_from:
            queues.deselect([queue.name])
            self.lane = DeliveryLane(app, settings, queue)

    def start(self, parent: Any) -> None:
        if self.lane is not None:
            self.lane.start()

    def stop(self, parent: Any) -> None:
        if self.lane is not None:
            self.lane.stop()

    def terminate(self, parent: Any) -> None:
        if self.lane is not None:
            self.lane.stop(grace=0)
