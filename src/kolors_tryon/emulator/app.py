"""Routing and behaviour of the emulated API, independent of the HTTP plumbing.

:class:`EmulatorApp` turns one request (method, target, headers, body) into one
:class:`Response`; ``server.py`` only reads sockets and writes bytes. The order of the
gates an API request passes, chosen where KLING_API.md is silent, is:

1. count it (a create is counted, with its ``external_task_id``, whatever its answer;
   so is every call to ``/account/costs``);
2. faults: ``slow_rate`` delay, then ``error_rate`` (500/5000), then ``throttle_rate``
   (429/1302 with ``Retry-After``), all before routing and auth, like a gateway would;
3. ``/account/costs`` while ``account_costs_enabled`` is off: a non-JSON 404 for any
   method, before auth, as a reseller's front server answers a path it lacks (not
   counted in ``answers_by_code``: it has no business code);
4. unknown path or wrong method: 404/1202;
5. authentication (401/100x);
6. for creates: ``account_error`` (429/1100..1102, before any body check, since the
   account is refused whatever it sends), body parsing (1200), field checks (1201);
   then ``late_create_rate`` holds the request; then duplicate ``external_task_id``
   (1201) and concurrency (1303) are checked as the task is made; then ``drop_rate``;
7. for ``/account/costs``: the per-account rate limit (429/1302), after auth because
   the limit belongs to the account the credentials name.

Control endpoints (``/_emulator/...``) are not part of the emulated API: no auth, no
faults, not counted in ``answers_by_code``. Their bodies are bare JSON (no envelope):
``GET stats`` returns exactly ``EmulatorServer.stats()``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kolors_tryon.emulator.auth import authenticate
from kolors_tryon.emulator.checks import parse_page, validate_create
from kolors_tryon.emulator.config import EmulatorConfig
from kolors_tryon.emulator.errors import ApiError
from kolors_tryon.emulator.faults import FaultDice
from kolors_tryon.emulator.images import result_png, sample_png
from kolors_tryon.emulator.state import (
    FAILED,
    SUBMITTED,
    SUCCEED,
    EmulatorState,
    Outcome,
    StatusChange,
    Task,
)

logger = logging.getLogger(__name__)

API_PATH = "/v1/images/kolors-virtual-try-on"
ACCOUNT_COSTS_PATH = "/account/costs"
CONTROL_PREFIX = "/_emulator/"

#: The emulated account's one resource pack, as ``GET /account/costs`` lists it.
RESOURCE_PACK_NAME = "Kolors Virtual Try-On pack"
RESOURCE_PACK_TYPE = "decreasing_total"
#: Lifetime of the emulated pack, from the emulator's start.
RESOURCE_PACK_LIFETIME = 365 * 24 * 3600.0
#: What a reseller's front server (nginx) answers for a path it does not have.
NOT_FOUND_PAGE = (
    b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
    b"<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

#: Reason of a task whose human image is one flat colour (the emulator's own rule).
BLANK_HUMAN_REASON = "no human detected in the human image"
#: Reasons drawn for tasks failed by ``fail_rate`` (plausible, as the docs give examples).
RANDOM_FAILURE_REASONS = (
    "content risk control triggered on the result image",
    "no human detected in the human image",
    "the garment could not be recognised in the cloth image",
)

_NOT_PARSED = object()


class Headers(Protocol):
    """The part of ``email.message.Message`` the app reads."""

    def get(self, name: str, default: None = None) -> str | None: ...


@dataclass
class Response:
    """One answer, or a dropped connection when ``drop`` is set."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


def _json(status: int, data: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, json.dumps(data).encode(), headers=dict(headers or {}))


def _envelope(code: int, message: str, data: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "request_id": str(uuid.uuid4()), "data": data}


class EmulatorApp:
    """The emulated service: state, configuration and fault dice behind one ``handle``."""

    def __init__(
        self,
        config: EmulatorConfig,
        on_change: Callable[[StatusChange], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Build the app.

        Args:
            config: Initial configuration.
            on_change: Where status changes for callbacks go (must not block).
            clock: Unix time source.
        """
        self._config = config
        self._config_lock = threading.Lock()
        self._clock = clock
        self.dice = FaultDice(config.seed)
        self.state = EmulatorState(on_change=on_change, render=self.render)
        # The pack is bought when the emulator starts; a reset keeps it (only the units
        # charged, which come from the tasks, start over).
        self._pack_id = uuid.uuid4().hex
        self._pack_bought = clock()
        #: The server's own base URL, set once the socket is bound.
        self.own_base_url = ""

    # ----- configuration -----------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        """The configuration in force (an immutable snapshot)."""
        return self._config

    def configure(self, knobs: Mapping[str, Any]) -> EmulatorConfig:
        """Swap in a configuration with ``knobs`` changed.

        Raises:
            ValueError: Unknown knob, bind-time field, or invalid value.
        """
        with self._config_lock:
            self._config = self._config.with_knobs(knobs)
            if "seed" in knobs:
                self.dice.reseed(self._config.seed)
            return self._config

    def reset(self) -> None:
        """Forget tasks and counters; restart the fault dice from the seed."""
        self.state.reset()
        self.dice.reseed(self._config.seed)

    def tick(self) -> None:
        """Apply due status changes (called by the server's ticker thread)."""
        self.state.advance(self._clock())

    def stats(self) -> dict[str, Any]:
        """Return the counters (see ``EmulatorServer.stats``)."""
        return self.state.stats(self._clock())

    def render(self, task: Task, status: str) -> dict[str, Any]:
        """Render ``task`` in ``status`` with the live result base and image key."""
        config = self._config
        base = config.public_base_url or self.own_base_url
        return task.to_object(status, base, config.image_key)

    # ----- dispatch ----------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Headers, body: bytes) -> Response:
        """Answer one HTTP request."""
        parts = urllib.parse.urlsplit(target)
        path = parts.path
        prefix = self._config.prefix
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            return self._api_answer(ApiError(1202, "Invalid request: no such endpoint"))
        rest = path[len(prefix) :]
        if rest.startswith(CONTROL_PREFIX):
            return self._control(method, rest[len(CONTROL_PREFIX) :], body)
        try:
            return self._api(method, rest.rstrip("/") or "/", parts.query, headers, body)
        except ApiError as error:
            return self._api_answer(error)

    def answer_error(self, error: ApiError) -> Response:
        """Answer an error found outside ``handle`` (unreadable body, crash), counted."""
        return self._api_answer(error)

    def _api_answer(self, error: ApiError | None = None, data: Any = None) -> Response:
        """Wrap ``data`` (or ``error``) in the envelope and count it by code."""
        if error is None:
            self.state.count_answer("0")
            return _json(200, _envelope(0, "SUCCEED", data))
        self.state.count_answer(str(error.code))
        return _json(error.status, _envelope(error.code, error.message, None), error.headers)

    def _route(self, method: str, path: str) -> tuple[str, str]:
        """Return ``(operation, task_ref)`` or raise 1202."""
        if path == API_PATH:
            if method == "POST":
                return "create", ""
            if method == "GET":
                return "list", ""
        elif path.startswith(API_PATH + "/") and "/" not in path[len(API_PATH) + 1 :]:
            if method == "GET":
                return "query", urllib.parse.unquote(path[len(API_PATH) + 1 :])
        elif path == ACCOUNT_COSTS_PATH:
            if method == "GET":
                return "account_costs", ""
        else:
            raise ApiError(1202, "Invalid request: no such endpoint")
        raise ApiError(1202, f"Invalid request method: {method} is not allowed here")

    def _api(self, method: str, path: str, query: str, headers: Headers, raw: bytes) -> Response:
        config = self._config
        body: Any = _NOT_PARSED
        if method == "POST" and path == API_PATH:
            try:
                body = json.loads(raw)
            except ValueError:
                body = _NOT_PARSED
            ext = body.get("external_task_id") if isinstance(body, dict) else None
            self.state.count_create_request(ext if isinstance(ext, str) and ext else None)
        elif path == ACCOUNT_COSTS_PATH:
            self.state.count("account_costs_requests")
        if self.dice.roll(config.slow_rate) and config.slow_seconds > 0:
            time.sleep(config.slow_seconds)
        if self.dice.roll(config.error_rate):
            raise ApiError(5000)
        if self.dice.roll(config.throttle_rate):
            extra = {}
            if config.retry_after is not None:
                extra["Retry-After"] = f"{config.retry_after:g}"
            raise ApiError(1302, headers=extra)
        if path == ACCOUNT_COSTS_PATH and not config.account_costs_enabled:
            return Response(404, NOT_FOUND_PAGE, content_type="text/html")
        operation, ref = self._route(method, path)
        now = self._clock()
        authenticate(headers.get("Authorization"), config, now)
        if operation == "create":
            return self._create(config, body, now)
        if operation == "account_costs":
            return self._account_costs(config, now)
        self.state.advance(now)
        if operation == "query":
            self.state.count("queries")
            task = self.state.find(ref, now)
            if task is None:
                raise ApiError(1203, "Requested resource does not exist: task not found")
            return self._api_answer(data=self.render(task, task.status_at(now)))
        self.state.count("lists")
        page_num, page_size = parse_page(query)
        tasks = self.state.page(page_num, page_size)
        return self._api_answer(data=[self.render(t, t.status_at(now)) for t in tasks])

    def _create(self, config: EmulatorConfig, body: Any, now: float) -> Response:
        if config.account_error is not None:
            raise ApiError(config.account_error)
        if config.create_error is not None:
            raise ApiError(config.create_error)
        if body is _NOT_PARSED:
            raise ApiError(1200, "Invalid request parameters: the body must be a JSON object")
        request = validate_create(body)
        if request.human_is_blank:
            outcome = Outcome(FAILED, BLANK_HUMAN_REASON)
        elif self.dice.roll(config.fail_rate):
            outcome = Outcome(FAILED, self.dice.choice(RANDOM_FAILURE_REASONS))
        else:
            outcome = Outcome(SUCCEED)
        if self.dice.roll(config.late_create_rate):
            self.state.count("late_creates")
            generation = self.state.generation
            # The task must not exist while the client waits: it is made only after the
            # hold, so a lookup during it says 404 like the real, backlogged API would.
            time.sleep(config.late_create_seconds)
            if self.state.generation != generation:
                # A reset forgot everything; a task made now would leak into the fresh
                # state. Nobody waits for this answer any more.
                return Response(drop=True)
        # Validation ran on the request's own clock reading; a slow URL fetch (or a late
        # create's hold) must not make the task look older than it is.
        task = self.state.create(
            now=max(now, self._clock()),
            limit=config.concurrency_limit,
            duration=config.task_duration,
            model_name=request.model_name,
            external_task_id=request.external_task_id,
            callback_url=request.callback_url,
            outcome=outcome,
            index_lag=config.index_lag,
        )
        if self.dice.roll(config.drop_rate):
            self.state.count_answer("dropped")
            return Response(drop=True)
        created_ms = int(task.created * 1000)
        data = {
            "task_id": task.task_id,
            "task_status": SUBMITTED,
            "task_info": {"external_task_id": task.external_task_id or ""},
            "created_at": created_ms,
            "updated_at": created_ms,
        }
        # After a late create's hold the client is gone: the write fails with a broken
        # pipe or reset, which the server's handle_error swallows (ConnectionError).
        return self._api_answer(data=data)

    def _account_costs(self, config: EmulatorConfig, now: float) -> Response:
        """Answer ``GET /account/costs``: the account's one try-on resource pack."""
        wait = self.state.admit_account_costs(now, config.account_costs_min_interval)
        if wait > 0:
            extra = {}
            if config.retry_after is not None:
                # The time really left, rounded up so that a client honouring it is
                # admitted on its next call.
                extra["Retry-After"] = f"{math.ceil(wait * 1000) / 1000:g}"
            raise ApiError(1302, headers=extra)
        charged = self.state.units_charged(now)
        bought_ms = int(self._pack_bought * 1000)
        pack = {
            "resource_pack_name": RESOURCE_PACK_NAME,
            "resource_pack_id": self._pack_id,
            "resource_pack_type": RESOURCE_PACK_TYPE,
            "total_quantity": config.units_total,
            "remaining_quantity": max(0.0, config.units_total - charged),
            "purchase_time": bought_ms,
            "effective_time": bought_ms,
            "invalid_time": bought_ms + int(RESOURCE_PACK_LIFETIME * 1000),
            "status": "online",
        }
        # The official answer nests a second code/msg pair inside data.
        data = {"code": 0, "msg": "", "resource_pack_subscribe_infos": [pack]}
        return self._api_answer(data=data)

    # ----- control endpoints -------------------------------------------------------

    def _control(self, method: str, rest: str, raw: bytes) -> Response:
        if rest == "stats" and method == "GET":
            return _json(200, self.stats())
        if rest == "config" and method == "GET":
            return _json(200, self._config.public_dict())
        if rest == "config" and method == "POST":
            try:
                knobs = json.loads(raw or b"{}")
                if not isinstance(knobs, dict):
                    raise ValueError("the body must be a JSON object of knobs")
                return _json(200, self.configure(knobs).public_dict())
            except ValueError as exc:
                return _json(400, {"error": str(exc)})
        if rest == "reset" and method == "POST":
            self.reset()
            return _json(200, {"reset": True})
        if method == "GET" and rest.startswith("samples/") and rest.endswith(".png"):
            image = sample_png(rest[len("samples/") : -len(".png")])
            if image is not None:
                return Response(200, image, content_type="image/png")
        if method == "GET" and rest.startswith("results/") and rest.endswith("/0.png"):
            now = self._clock()
            task = self.state.find(rest[len("results/") : -len("/0.png")], now)
            if task is not None and task.status_at(now) == SUCCEED:
                return Response(200, result_png(task.task_id), content_type="image/png")
            return _json(404, _envelope(1203, "Requested resource does not exist", None))
        return _json(404, _envelope(1202, "Invalid request: no such endpoint", None))
