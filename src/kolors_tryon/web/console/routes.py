"""The console's routes: every page, image and action, each behind the session.

`console_routes(console)` is the one table of routes (tests walk it, so a new route is
checked for access without anyone remembering to). Each endpoint is wrapped by
`_behind_session`: no valid session, no page (a redirect to the login page) and no
image (401); a POST without the session's CSRF token is refused (403). A job the user's
producers do not own answers 404, exactly like a job that does not exist.

Batches, retry and cancel come with issue 19 (producers and batches): the nav keeps a
hidden entry for them and no route pretends to do them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route

from kolors_tryon.config import defaults
from kolors_tryon.store import JobState
from kolors_tryon.store.console_reads import JobFilter, timeline
from kolors_tryon.store.reviews import Verdict, give_verdict
from kolors_tryon.web.console.state import Console, announce_review
from kolors_tryon.web.console.users import ConsoleUser, password_matches
from kolors_tryon.web.console.views import page, state_chart

__all__ = ["console_routes"]

log = logging.getLogger("kolors_tryon.web.console")

IMAGE_KINDS: Final = ("person", "garment", "result")
_VERDICTS: Final = frozenset(v.value for v in Verdict)
_EXPORT_PAGE: Final = 1000
_MAX_FORM_BYTES: Final = 16 * 1024


@dataclass(frozen=True)
class Viewer:
    """Who asks: the user, the session's CSRF token (for the forms), the POSTed form."""

    user: ConsoleUser
    csrf: str
    form: dict[str, str]


Page = Callable[[Console, Request, Viewer], Awaitable[Response]]


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each); {} for anything else."""
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _behind_session(console: Console, endpoint: Page, *, image: bool = False) -> Any:
    async def guarded(request: Request) -> Response:
        session = console.signer.read(request)
        user = console.users.get(session.user) if session and session.user else None
        if session is None or user is None:
            log.info("console: %s %s refused: no session", request.method, request.url.path)
            if request.method == "GET" and not image:
                target = quote(request.url.path, safe="/")
                return RedirectResponse(f"/console/login?next={target}", status_code=303)
            return PlainTextResponse("log in first", status_code=401)
        form: dict[str, str] = {}
        if request.method == "POST":
            form = await _form(request)
            if not session.csrf_matches(form.get("csrf")):
                log.warning("console: %s by %s refused: CSRF token", request.url.path, user.name)
                return PlainTextResponse("refused: the form's CSRF token is missing", 403)
        log.info("console: %s %s by %s", request.method, request.url.path, user.name)
        return await endpoint(console, request, Viewer(user, session.csrf, form))

    guarded.__name__ = endpoint.__name__
    return guarded


def _not_found(viewer: Viewer) -> Response:
    return page("error.html", 404, viewer=viewer, message="No such job.")


# --------------------------------------------------------------------------- login ------
async def login_form(
    console: Console, request: Request, error: str = "", status_code: int = 200
) -> Response:
    """The login page, with a pre-session CSRF token of its own."""
    session = console.signer.issue("")
    response = page(
        "login.html",
        status_code,
        error=error,
        viewer=None,
        csrf=session.csrf,
        next=request.query_params.get("next", ""),
    )
    console.signer.put(response, session)
    return response


async def login(console: Console, request: Request) -> Response:
    """Check the name and password, throttled per name and per client address."""
    form = await _form(request)
    anonymous = console.signer.read(request)
    if anonymous is None or not anonymous.csrf_matches(form.get("csrf")):
        log.warning("console: login refused: CSRF token (from %s)", _client(request))
        return PlainTextResponse("refused: reload the login page", status_code=403)
    name, address = form.get("name", "")[:64], _client(request)
    wait = console.throttle.wait_for(name, address)
    if wait > 0:
        log.warning("console: login of %r from %s throttled (%.0f s)", name, address, wait)
        return await login_form(
            console, request, f"Too many failed logins: try again in {wait:.0f} s.", 429
        )
    user = console.users.get(name)
    if not await run_in_threadpool(password_matches, user, form.get("password", "")):
        console.throttle.failed(name, address)
        log.warning("console: login of %r from %s failed", name, address)
        return await login_form(console, request, "Wrong name or password.", 401)
    console.throttle.succeeded(name, address)
    log.info("console: %s logged in from %s", name, address)
    target = form.get("next", "")
    safe = target if target.startswith("/console/") and "//" not in target else "/console/"
    response = RedirectResponse(safe, status_code=303)
    console.signer.put(response, console.signer.issue(name))
    return response


async def logout(console: Console, request: Request, viewer: Viewer) -> Response:
    log.info("console: %s logged out", viewer.user.name)
    response = RedirectResponse("/console/login", status_code=303)
    console.signer.end(response)
    return response


# --------------------------------------------------------------------------- pages ------
async def overview(console: Console, request: Request, viewer: Viewer) -> Response:
    """Jobs now and over 24 hours, the backlog's wait, the account, the last errors."""
    now = time.time()
    figures = await run_in_threadpool(console.reads.overview, viewer.user.scope, now)
    account = await run_in_threadpool(console.account)
    return page(
        "overview.html",
        viewer=viewer,
        figures=figures,
        chart=state_chart(figures.hourly, now),
        account=account,
    )


def _job_filter(request: Request) -> tuple[JobFilter, dict[str, str]]:
    """The table's filters from the query string, and their values to show back."""
    q = request.query_params
    shown = {
        key: q.get(key, "").strip()
        for key in ("state", "field", "value", "from", "to", "error", "review", "view")
    }
    state = shown["state"] if shown["state"] in {s.value for s in JobState} else ""
    shown["state"] = state
    return (
        JobFilter(
            state=JobState(state) if state else None,
            metadata_key=shown["field"] or None,
            metadata_value=shown["value"] if shown["field"] else None,
            created_from=_day(shown["from"]),
            created_to=_day(shown["to"], end=True),
            error_code=shown["error"] or None,
            review_state=shown["review"] if shown["review"] in _VERDICTS else None,
        ),
        shown,
    )


def _day(text: str, *, end: bool = False) -> float | None:
    """A YYYY-MM-DD date (UTC) as Unix seconds: its start, or the next day's for `end`."""
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
    return day + 86400 if end else day


async def jobs(console: Console, request: Request, viewer: Viewer) -> Response:
    """The jobs table (or gallery), filtered, a keyset page at a time."""
    wanted, shown = _job_filter(request)
    cursor = request.query_params.get("after")
    result = await run_in_threadpool(
        lambda: console.reads.page(
            viewer.user.scope, wanted, limit=defaults.CONSOLE_PAGE_SIZE, cursor=cursor
        )
    )
    ids = [job.job_id for job in result.jobs]
    reviews = await run_in_threadpool(console.reads.reviews, ids)
    thumbnails = await run_in_threadpool(console.reads.thumbnail_kinds, ids)
    query = "&".join(f"{k}={quote(v)}" for k, v in shown.items() if v)
    return page(
        "jobs.html",
        viewer=viewer,
        page=result,
        reviews=reviews,
        thumbnails=thumbnails,
        shown=shown,
        query=query,
        states=[s.value for s in JobState],
        gallery=shown["view"] == "gallery",
    )


async def job(console: Console, request: Request, viewer: Viewer) -> Response:
    """One job: its images, record, timeline, webhook deliveries and review actions."""
    job_id = request.path_params["job_id"]
    found = await run_in_threadpool(console.reads.job, viewer.user.scope, job_id)
    if found is None:
        return _not_found(viewer)
    record, review = found
    deliveries = await run_in_threadpool(console.store.webhooks.of_job, job_id)
    thumbnails = await run_in_threadpool(console.reads.thumbnail_kinds, [job_id])
    return page(
        "job.html",
        viewer=viewer,
        job=record,
        review=review,
        timeline=timeline(record, review),
        deliveries=deliveries,
        thumbnails=thumbnails.get(job_id, set()),
        record_json=record.model_dump_json(indent=2),
        reviewable=record.state is JobState.SUCCEEDED and review.state is None,
    )


async def image(console: Console, request: Request, viewer: Viewer) -> Response:
    """A job's person or garment thumbnail, or its result (our copy, else Kling's URL)."""
    job_id, kind = request.path_params["job_id"], request.path_params["kind"]
    if kind not in IMAGE_KINDS:
        return PlainTextResponse("no such image", status_code=404)
    if kind != "result":
        data = await run_in_threadpool(console.reads.thumbnail, viewer.user.scope, job_id, kind)
        if data is None:
            return PlainTextResponse("no thumbnail kept", status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private"})
    found = await run_in_threadpool(console.reads.job, viewer.user.scope, job_id)
    if found is None or not found[0].images:
        return PlainTextResponse("no result", status_code=404)
    result = found[0].images[0]
    download = request.query_params.get("download") == "1"
    if result.stored and not result.stored.startswith("s3://") and Path(result.stored).is_file():
        name = f"{job_id}{Path(result.stored).suffix}" if download else None
        return FileResponse(result.stored, filename=name, headers={"Cache-Control": "private"})
    # No copy of ours (yet): Kling's signed URL, valid for 30 days, only to this session.
    return RedirectResponse(result.url, status_code=302, headers={"Cache-Control": "no-store"})


async def review(console: Console, request: Request, viewer: Viewer) -> Response:
    """Approve or reject a succeeded job's result (once): event `job.reviewed`, webhook."""
    job_id = request.path_params["job_id"]
    try:
        verdict = Verdict(viewer.form.get("verdict", ""))
    except ValueError:
        return PlainTextResponse("verdict must be approved or rejected", status_code=400)
    outcome = await run_in_threadpool(
        give_verdict, console.store.engine, viewer.user.scope, job_id, verdict, viewer.user.name
    )
    if outcome is None:
        return _not_found(viewer)
    if outcome.given:
        log.info("console: job %s %s by %s", job_id, verdict, viewer.user.name)
        await run_in_threadpool(announce_review, console, outcome)
    return RedirectResponse(f"/console/jobs/{quote(job_id, safe='')}", status_code=303)


async def export(console: Console, request: Request, viewer: Viewer) -> Response:
    """The approved results the user may see, as CSV: what goes on the product pages.

    Streamed a keyset page at a time, so a large export holds neither the store nor the
    process's memory. The filters of the table apply; the verdict is always `approved`.
    """
    wanted, _ = _job_filter(request)
    wanted = replace(wanted, review_state=Verdict.APPROVED.value)
    scope = viewer.user.scope
    log.info("console: export of approved results by %s", viewer.user.name)

    read_page = partial(console.reads.page, scope, wanted, limit=_EXPORT_PAGE)

    async def rows() -> AsyncIterator[str]:
        yield _csv_line(["job_id", "result_url", "stored", "metadata", "created_at", "finished_at"])
        cursor: str | None = None
        while True:
            page = await run_in_threadpool(partial(read_page, cursor=cursor))
            for job in page.jobs:
                image = job.images[0] if job.images else None
                yield _csv_line(
                    [
                        job.job_id,
                        image.url if image else "",
                        image.stored or "" if image else "",
                        json.dumps(job.metadata, sort_keys=True),
                        job.created_at,
                        job.finished_at or "",
                    ]
                )
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="approved.csv"'},
    )


def _csv_line(fields: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(fields)
    return out.getvalue()


async def accounts(console: Console, request: Request, viewer: Viewer) -> Response:
    """The account's slots, pause and budget."""
    account = await run_in_threadpool(console.account)
    return page("accounts.html", viewer=viewer, account=account)


async def static(request: Request) -> Response:
    """The console's stylesheet and script (no data: served without a session)."""
    name = request.path_params["name"]
    path = Path(__file__).resolve().parent / "static" / name
    if name not in {"console.css", "slider.js"} or not path.is_file():
        return PlainTextResponse("not found", status_code=404)
    return FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})


# --------------------------------------------------------------------------- table ------
def console_routes(console: Console) -> list[BaseRoute]:
    """Every route of the console, relative to its mount at /console."""

    def open_page(endpoint: Callable[[Console, Request], Awaitable[Response]]) -> Any:
        async def run(request: Request) -> Response:
            return await endpoint(console, request)

        run.__name__ = endpoint.__name__
        return run

    guarded = _behind_session
    return [
        Route("/login", open_page(login_form), methods=["GET"], name="console_login"),
        Route("/login", open_page(login), methods=["POST"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/logout", guarded(console, logout), methods=["POST"]),
        Route("/", guarded(console, overview), methods=["GET"]),
        Route("/jobs", guarded(console, jobs), methods=["GET"]),
        Route("/jobs/{job_id}", guarded(console, job), methods=["GET"]),
        Route(
            "/jobs/{job_id}/images/{kind}",
            guarded(console, image, image=True),
            methods=["GET"],
        ),
        Route("/jobs/{job_id}/review", guarded(console, review), methods=["POST"]),
        Route("/export/approved.csv", guarded(console, export), methods=["GET"]),
        Route("/accounts", guarded(console, accounts), methods=["GET"]),
        # TODO(issue 19): /batches, /batches/{id}, retry and cancel (producers, batches).
    ]


#: Routes any visitor may open: the login form and the stylesheet/script.
OPEN_PATHS: Final = frozenset({"/login", "/static/{name}"})
