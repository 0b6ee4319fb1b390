"""The emulator's memory: tasks, the account's concurrency slots, and the counters.

Everything sits behind one lock. A task's status is a pure function of the clock (its
creation time and duration), so reads compute it lazily and never wait for a ticker;
the ticker (and every request) calls :meth:`EmulatorState.advance`, which pops due
transitions from a heap, frees slots of ended tasks and hands status changes to the
callback sink. The heap keeps that O(log n) per transition however many tasks exist,
so a benchmark with thousands of tasks pays nothing per request.

Choices where KLING_API.md is silent:

* All keys and JWTs belong to one emulated account: concurrency and the uniqueness of
  ``external_task_id`` are shared by all of them (as the docs say keys of one account do).
* ``task_result`` is null until the task succeeds (not only when it failed), and
  ``final_unit_deduction`` is ``"0"`` until then: a client must not read results early.
* ``task_info.external_task_id`` is ``""`` when the caller gave none.
* ``updated_at`` is the time of the last status change, not of the last read.
* With ``index_lag``, a task stays out of the ``external_task_id`` index for a while:
  lookup by that id and the uniqueness check both miss it (so two tasks may share an
  id), while lookup by ``task_id`` and the list see it at once, since they read the task
  store and not the index. When several tasks share an id, lookup returns the oldest
  visible one, so that (with a constant lag) later tasks coming into view do not change
  the answer under a client's feet.
* The units charged are ``UNIT_DEDUCTION`` per task that ended ``succeed``; failed and
  running tasks cost nothing, as ``final_unit_deduction`` says of them.
* A task that jumps straight from ``submitted`` to its end between two ticks still gets
  both callbacks, ``processing`` first, so callback consumers see every status.
"""

from __future__ import annotations

import heapq
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kolors_tryon.emulator.errors import ApiError

SUBMITTED = "submitted"
PROCESSING = "processing"
SUCCEED = "succeed"
FAILED = "failed"
FINAL_STATUSES = frozenset({SUCCEED, FAILED})

#: Fraction of a task's duration spent in ``submitted``.
SUBMITTED_SHARE = 0.25
#: ``final_unit_deduction`` of a succeeded task, and what it takes from the account.
UNIT_DEDUCTION = "1"


@dataclass
class Task:
    """One try-on task as the emulated service keeps it.

    Attributes:
        task_id: Numeric string id.
        external_task_id: The caller's id, or None.
        model_name: Model asked for.
        created: Unix time of creation, in seconds.
        duration: Seconds from creation to the end (fixed at creation: a later change of
            the ``task_duration`` knob does not move running tasks).
        outcome: ``succeed`` or ``failed``, decided at creation.
        reason: ``task_status_msg`` of a failed task.
        callback_url: Where status changes are POSTed, or None.
        indexed_at: Unix time from which lookup by ``external_task_id`` finds the task
            (creation plus the ``index_lag`` in force then).
        notified: Last status handed to the callback sink.
    """

    task_id: str
    external_task_id: str | None
    model_name: str
    created: float
    duration: float
    outcome: str
    reason: str
    callback_url: str | None
    indexed_at: float
    notified: str = SUBMITTED

    @property
    def processing_at(self) -> float:
        return self.created + self.duration * SUBMITTED_SHARE

    @property
    def ends_at(self) -> float:
        return self.created + self.duration

    def status_at(self, now: float) -> str:
        """Return the status at Unix time ``now``."""
        if now >= self.ends_at:
            return self.outcome
        if now >= self.processing_at:
            return PROCESSING
        return SUBMITTED

    def _changed_ms(self, status: str) -> int:
        if status in FINAL_STATUSES:
            moment = self.ends_at
        elif status == PROCESSING:
            moment = self.processing_at
        else:
            moment = self.created
        return int(moment * 1000)

    def to_object(self, status: str, result_base: str, image_key: str) -> dict[str, Any]:
        """Render the task object of KLING_API.md as it looks in ``status``."""
        succeeded = status == SUCCEED
        result = None
        if succeeded:
            url = f"{result_base}/_emulator/results/{self.task_id}/0.png"
            result = {"images": [{image_key: 0, "url": url}]}
        return {
            "task_id": self.task_id,
            "task_status": status,
            "task_status_msg": self.reason if status == FAILED else "",
            "task_info": {"external_task_id": self.external_task_id or ""},
            "task_result": result,
            "final_unit_deduction": UNIT_DEDUCTION if succeeded else "0",
            "created_at": int(self.created * 1000),
            "updated_at": self._changed_ms(status),
        }


@dataclass(frozen=True)
class StatusChange:
    """A status change to deliver to a callback URL.

    Attributes:
        url: The task's ``callback_url``.
        body: The bare task object, already serialised (a snapshot, not a live view).
        task_id: Used to keep one task's callbacks in order.
        generation: State generation; a ``reset`` makes older deliveries uncounted.
    """

    url: str
    body: bytes
    task_id: str
    generation: int


@dataclass(frozen=True)
class Outcome:
    """How a new task will end: ``succeed``, or ``failed`` with a reason."""

    status: str
    reason: str = ""


class EmulatorState:
    """Tasks and counters, thread-safe behind one lock."""

    def __init__(
        self,
        on_change: Callable[[StatusChange], None],
        render: Callable[[Task, str], dict[str, Any]],
    ) -> None:
        """Create empty state.

        Args:
            on_change: Called (under the lock, so it must not block) for each status
                change of a task that has a callback URL.
            render: Turns a task and a status into the task object; it belongs to the
                app because result URLs and ``image_key`` come from the live config.
        """
        self._lock = threading.Lock()
        self._on_change = on_change
        self._render = render
        # Ids start from the clock so that tasks of successive runs never share an id.
        self._ids = itertools.count(860_000_000_000_000_000 + int(time.time() * 1000) * 10_000)
        self._generation = 0
        self._clear()

    def _clear(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._order: list[Task] = []
        # Every task per external id, oldest first: with index_lag there can be several.
        self._by_external: dict[str, list[Task]] = {}
        self._active: set[str] = set()
        self._due: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._peak = 0
        self._counts: Counter[str] = Counter()
        self._create_requests_by_ext: Counter[str] = Counter()
        self._tasks_by_ext: Counter[str] = Counter()
        self._answers: Counter[str] = Counter()
        self._ended: Counter[str] = Counter()
        self._account_costs_admitted: float | None = None

    # ----- tasks -------------------------------------------------------------------

    def create(
        self,
        *,
        now: float,
        limit: int,
        duration: float,
        model_name: str,
        external_task_id: str | None,
        callback_url: str | None,
        outcome: Outcome,
        index_lag: float = 0.0,
    ) -> Task:
        """Make a task if the account may, holding a slot until it ends.

        Args:
            now: Unix time of creation.
            limit: The account's concurrency limit.
            duration: Seconds from creation to the end.
            model_name: Model asked for.
            external_task_id: The caller's id, or None.
            callback_url: Where status changes go, or None.
            outcome: How the task will end.
            index_lag: Seconds before lookup and uniqueness by ``external_task_id`` see it.

        Raises:
            ApiError: 1201 when a visible task has ``external_task_id``, 1303 when slots
                are full.
        """
        with self._lock:
            self._advance(now)
            if external_task_id is not None and self._indexed(external_task_id, now) is not None:
                self._counts["duplicates"] += 1
                raise ApiError(1201, "external_task_id already exists")
            if len(self._active) >= limit:
                raise ApiError(
                    1303,
                    f"Concurrency over the resource pack limit ({limit} tasks in flight)",
                )
            task = Task(
                task_id=str(next(self._ids)),
                external_task_id=external_task_id,
                model_name=model_name,
                created=now,
                duration=duration,
                outcome=outcome.status,
                reason=outcome.reason,
                callback_url=callback_url,
                indexed_at=now + index_lag,
            )
            self._tasks[task.task_id] = task
            self._order.append(task)
            self._active.add(task.task_id)
            self._peak = max(self._peak, len(self._active))
            self._counts["creates"] += 1
            if external_task_id is not None:
                self._by_external.setdefault(external_task_id, []).append(task)
                self._tasks_by_ext[external_task_id] += 1
            heapq.heappush(self._due, (task.processing_at, next(self._seq), task.task_id))
            heapq.heappush(self._due, (task.ends_at, next(self._seq), task.task_id))
            # A zero-length task has already ended: settle it before anyone reads.
            self._advance(now)
            return task

    def find(self, ref: str, now: float) -> Task | None:
        """Return a task by ``task_id`` or, failing that, by ``external_task_id``.

        Lookup by ``external_task_id`` only sees tasks already indexed at ``now``.
        """
        with self._lock:
            return self._tasks.get(ref) or self._indexed(ref, now)

    def _indexed(self, external_task_id: str, now: float) -> Task | None:
        """Return the oldest task with ``external_task_id`` that the index shows at ``now``."""
        for task in self._by_external.get(external_task_id, ()):
            if task.indexed_at <= now:
                return task
        return None

    def page(self, page_num: int, page_size: int) -> list[Task]:
        """Return one page of tasks, newest first."""
        with self._lock:
            end = len(self._order) - (page_num - 1) * page_size
            if end <= 0:
                return []
            start = max(0, end - page_size)
            return self._order[start:end][::-1]

    def advance(self, now: float) -> None:
        """Apply every status change due by ``now`` (ends tasks, fires callbacks)."""
        with self._lock:
            self._advance(now)

    def _advance(self, now: float) -> None:
        due = self._due
        while due and due[0][0] <= now:
            _, _, task_id = heapq.heappop(due)
            task = self._tasks.get(task_id)
            if task is None:
                continue
            status = task.status_at(now)
            if status == task.notified:
                continue
            if task.callback_url is not None:
                if status in FINAL_STATUSES and task.notified == SUBMITTED:
                    self._emit(task, PROCESSING)
                self._emit(task, status)
            task.notified = status
            if status in FINAL_STATUSES:
                self._active.discard(task_id)
                self._ended[status] += 1

    def _emit(self, task: Task, status: str) -> None:
        assert task.callback_url is not None
        obj = self._render(task, status)
        self._counts["callbacks_queued"] += 1
        self._on_change(
            StatusChange(
                url=task.callback_url,
                body=json.dumps(obj).encode(),
                task_id=task.task_id,
                generation=self._generation,
            )
        )

    # ----- account -----------------------------------------------------------------

    def units_charged(self, now: float) -> float:
        """Return the units taken so far: one ``UNIT_DEDUCTION`` per succeeded task."""
        with self._lock:
            self._advance(now)
            return self._ended[SUCCEED] * float(UNIT_DEDUCTION)

    def admit_account_costs(self, now: float, min_interval: float) -> float:
        """Admit an account-costs call, or say how long it must wait.

        The window runs from the last admitted call, so refused calls do not extend it:
        a client that waits as told gets through.

        Returns:
            0.0 when admitted, else the seconds left until a call would be.
        """
        with self._lock:
            last = self._account_costs_admitted
            if last is not None and now < last + min_interval:
                return last + min_interval - now
            self._account_costs_admitted = now
            return 0.0

    # ----- counters ----------------------------------------------------------------

    def count_create_request(self, external_task_id: str | None) -> None:
        """Count a create POST, whatever its answer will be."""
        with self._lock:
            self._counts["create_requests"] += 1
            if external_task_id is not None:
                self._create_requests_by_ext[external_task_id] += 1

    @property
    def generation(self) -> int:
        """Number of resets so far: work begun before a reset can tell it is stale."""
        with self._lock:
            return self._generation

    def count(self, name: str) -> None:
        """Increment a plain counter (``queries``, ``lists``, ``late_creates``, ...)."""
        with self._lock:
            self._counts[name] += 1

    def count_answer(self, key: str) -> None:
        """Count one API answer by business code (or ``"dropped"``)."""
        with self._lock:
            self._answers[key] += 1

    def callback_done(self, generation: int, ok: bool) -> None:
        """Record a callback delivery (ignored if a reset happened since it was queued)."""
        with self._lock:
            if generation == self._generation:
                self._counts["callbacks_sent" if ok else "callbacks_failed"] += 1

    def stats(self, now: float) -> dict[str, Any]:
        """Return the counters as JSON-able data (see ``EmulatorServer.stats``)."""
        with self._lock:
            self._advance(now)
            # Ended tasks are counted as they end, so this costs O(in flight), not O(tasks).
            by_status = self._ended + Counter(
                self._tasks[task_id].status_at(now) for task_id in self._active
            )
            return {
                "create_requests": self._counts["create_requests"],
                "creates": self._counts["creates"],
                "duplicates": self._counts["duplicates"],
                "late_creates": self._counts["late_creates"],
                "create_requests_by_external_id": dict(self._create_requests_by_ext),
                "tasks_by_external_id": dict(self._tasks_by_ext),
                "queries": self._counts["queries"],
                "lists": self._counts["lists"],
                "account_costs_requests": self._counts["account_costs_requests"],
                "in_flight": len(self._active),
                "peak_in_flight": self._peak,
                "answers_by_code": dict(self._answers),
                "callbacks_sent": self._counts["callbacks_sent"],
                "callbacks_failed": self._counts["callbacks_failed"],
                "callbacks_queued": self._counts["callbacks_queued"],
                "tasks": len(self._tasks),
                "tasks_by_status": dict(by_status),
            }

    def reset(self) -> None:
        """Forget every task and counter (task ids keep increasing)."""
        with self._lock:
            self._generation += 1
            self._clear()
