"""The review console's access rules, over HTTP against a real `tryon web`, worker and
emulator: closed by default, every route behind the session (enumerated from the router,
so a new route is covered without anyone listing it), producers bound to users, CSRF on
every POST, login throttling. The pages themselves are driven in tests/browser/.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from starlette.routing import Mount, Route

from console_service import (
    PASSWORDS,
    REVIEW_HOOKED,
    ConsoleStack,
    Session,
    console_stack,
    login,
    login_form,
    try_login,
)
from harness import EventRecorder, wait_until
from kolors_tryon.config import Settings
from kolors_tryon.web import create_web_app
from kolors_tryon.web.console import CONSOLE_PREFIX, OPEN_PATHS, ConsoleMisconfigured
from web_service import Web, free_port, web_stack

JOB = "console-0"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    """The service with the console open and three succeeded jobs, shared by this module."""
    with console_stack(tmp_path_factory.mktemp("console")) as stack:
        yield stack


def _console_routes(web: Web) -> list[tuple[str, str]]:
    """(method, path template) of every console route, read from the app's own router."""
    app = create_web_app(web.deployment.settings)
    mounts = [r for r in app.routes if isinstance(r, Mount) and r.path == CONSOLE_PREFIX]
    assert len(mounts) == 1
    found = [
        (method, route.path)
        for route in mounts[0].routes
        if isinstance(route, Route)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]
    assert len(found) >= 8
    return found


def _fill(path: str, kind: str = "person") -> str:
    values = {"{job_id}": JOB, "{kind}": kind, "{name}": "console.css"}
    for key, value in values.items():
        path = path.replace(key, value)
    return CONSOLE_PREFIX + path


def _ask(session: Session, method: str, path: str) -> requests.Response:
    if method == "GET":
        return session.get(path)
    return session.post(path, {"verdict": "approved"})


def test_a_user_of_the_producer_sees_its_job_and_its_images(stack: ConsoleStack) -> None:
    """ana (producer `default`) opens the job's page and each of its three images."""
    web = stack.web
    ana = login(web.url, "ana")
    assert JOB in ana.get(f"/console/jobs/{JOB}").text
    for kind in ("person", "garment"):
        image = ana.get(f"/console/jobs/{JOB}/images/{kind}")
        assert image.status_code == 200
        assert image.headers["content-type"] == "image/jpeg"
        assert image.content[:3] == b"\xff\xd8\xff"
    result = ana.get(f"/console/jobs/{JOB}/images/result")
    assert result.status_code in (200, 302)


@pytest.mark.parametrize("kind", ["person", "result"])
def test_no_console_route_answers_without_a_session(stack: ConsoleStack, kind: str) -> None:
    """Every route but the login form and the stylesheet: no page and no image without a
    session (a redirect to the login page, or 401), nor with a forged cookie."""
    web = stack.web
    anonymous = Session(web.url, "", "")
    forged = Session(web.url, "eyJ1IjoiYW5hIiwiYyI6IngifQ.forged.signature", "x")
    for method, template in _console_routes(web):
        if template in OPEN_PATHS:
            continue
        for visitor in (anonymous, forged):
            answer = _ask(visitor, method, _fill(template, kind))
            assert answer.status_code in (303, 401), (method, template, answer.status_code)
            if answer.status_code == 303:
                assert answer.headers["location"].startswith("/console/login")
            assert JOB not in answer.text
            assert b"\xff\xd8" not in answer.content[:4]


@pytest.mark.parametrize("kind", ["person", "garment", "result"])
def test_a_user_of_another_producer_sees_no_page_and_no_image_of_the_job(
    stack: ConsoleStack, kind: str
) -> None:
    """bob (producer `other`) is told "not found" on every route of the job, and the
    job's id appears on none of the pages he may open."""
    web = stack.web
    bob = login(web.url, "bob")
    for method, template in _console_routes(web):
        if template in OPEN_PATHS or template == "/logout":
            continue
        answer = _ask(bob, method, _fill(template, kind))
        if "{job_id}" in template:
            assert answer.status_code == 404, (method, template, answer.status_code)
        else:
            assert answer.status_code == 200, (method, template)
        assert JOB not in answer.text, (method, template)
        assert b"\xff\xd8" not in answer.content[:4]
    filtered = bob.get("/console/jobs?field=sku&value=SKU-0")
    assert JOB not in filtered.text


def test_an_admin_sees_every_producers_jobs(stack: ConsoleStack) -> None:
    """ops (admin) sees the jobs of `default` too."""
    web, ids = stack.web, stack.ids
    page = login(web.url, "ops").get("/console/jobs")
    assert all(job_id in page.text for job_id in ids)


def test_a_post_without_the_csrf_token_is_refused(stack: ConsoleStack) -> None:
    """Approving without the session's CSRF token (or with another's) changes nothing."""
    web = stack.web
    ana = login(web.url, "ana")
    other = login(web.url, "ops")
    missing = ana.post(f"/console/jobs/{JOB}/review", {"verdict": "approved"}, csrf=False)
    wrong = ana.post(
        f"/console/jobs/{JOB}/review", {"verdict": "approved", "csrf": other.csrf}, csrf=False
    )
    assert (missing.status_code, wrong.status_code) == (403, 403)
    assert "approved by" not in ana.get(f"/console/jobs/{JOB}").text
    login_without = login_form(web.url).post(
        "/console/login", {"name": "ana", "password": PASSWORDS["ana"]}, csrf=False
    )
    assert login_without.status_code == 403


def test_a_verdict_is_given_once_published_and_sent_to_a_producer_who_asked(
    stack: ConsoleStack,
) -> None:
    """ana approves: `job.reviewed` on the events exchange and the `reviewed` webhook,
    both with the verdict; ops rejecting after her changes nothing; the export of approved
    results lists it alone (and nothing for bob)."""
    web = stack.web
    events = EventRecorder(web.deployment.settings)
    try:
        ana, ops = login(web.url, "ana"), login(web.url, "ops")
        path = f"/console/jobs/{REVIEW_HOOKED}/review"
        assert ana.post(path, {"verdict": "approved"}).status_code == 303
        assert ops.post(path, {"verdict": "rejected"}).status_code == 303
        wait_until(lambda: "job.reviewed" in events.for_job(REVIEW_HOOKED), 20, 0.2, "event")
        wait_until(lambda: bool(stack.hooks.posts()), 30, 0.2, "the reviewed webhook")
    finally:
        events.stop()
    assert events.for_job(REVIEW_HOOKED).count("job.reviewed") == 1
    (hook,) = stack.hooks.posts()
    assert hook.record["job_id"] == REVIEW_HOOKED
    assert hook.record["review"]["state"] == "approved"
    assert hook.record["review"]["by"] == "ana"
    assert hook.verifies(web.deployment.tryon("webhooks", "secret").stdout.strip())
    page = ops.get(f"/console/jobs/{REVIEW_HOOKED}").text
    assert "approved by ana" in page
    assert 'value="approved"' not in page  # no more review buttons
    export = ana.get("/console/export/approved.csv")
    assert export.headers["content-type"].startswith("text/csv")
    lines = export.text.splitlines()
    assert lines[0].startswith("job_id,result_url")
    assert [line.split(",")[0] for line in lines[1:]] == [REVIEW_HOOKED]
    assert login(web.url, "bob").get("/console/export/approved.csv").text.splitlines() == lines[:1]


def test_forget_removes_the_thumbnails(stack: ConsoleStack) -> None:
    """`tryon forget` deletes the job's input thumbnails with its other personal data."""
    web = stack.web
    ana = login(web.url, "ana")
    job = stack.ids[-1]
    assert ana.get(f"/console/jobs/{job}/images/person").status_code == 200
    forgotten = web.deployment.tryon("forget", job)
    assert forgotten.returncode == 0, forgotten.stderr
    for kind in ("person", "garment"):
        assert ana.get(f"/console/jobs/{job}/images/{kind}").status_code == 404


def test_logins_are_throttled_after_repeated_failures(stack: ConsoleStack) -> None:
    """After five wrong passwords even the right one waits (429), told how long."""
    web = stack.web
    for _ in range(5):
        assert try_login(web.url, "ops", "wrong password").status_code == 401
    throttled = try_login(web.url, "ops", PASSWORDS["ops"])
    assert throttled.status_code == 429
    assert "Too many failed logins" in throttled.text


def test_access_and_actions_are_logged_without_secrets(stack: ConsoleStack) -> None:
    """The log names who logged in, was refused, viewed and approved; never a password,
    a session cookie or a CSRF token."""
    web = stack.web
    ana = login(web.url, "ana")
    ana.get(f"/console/jobs/{JOB}")
    # Self-contained: pytest-xdist may run this test on a worker where no other test of the
    # module has refused a visitor or approved the job (a verdict is given only once).
    requests.get(f"{web.url}/console/", timeout=10, allow_redirects=False)  # refused
    if "approved by ana" not in ana.get(f"/console/jobs/{REVIEW_HOOKED}").text:
        path = f"/console/jobs/{REVIEW_HOOKED}/review"
        assert ana.post(path, {"verdict": "approved"}).status_code == 303
    log = web.log_path.read_text()
    assert "console: ana logged in" in log
    assert f"console: GET /console/jobs/{JOB} by ana" in log
    assert f"console: job {REVIEW_HOOKED} approved by ana" in log
    assert "refused: no session" in log
    for secret in [*PASSWORDS.values(), ana.cookie, ana.csrf]:
        assert secret not in log


def test_the_console_is_closed_without_users(tmp_path: Path) -> None:
    """No TRYON_CONSOLE_USERS: /console answers 404 and the start-up log says so; users
    without TRYON_CONSOLE_SECRET: `tryon web` refuses to start (exit 1, saying why)."""
    users = '[{"name": "x", "password_hash": "$argon2id$v=19$m=65536,t=3,p=4$x$y"}]'
    with web_stack(tmp_path) as web:
        assert requests.get(f"{web.url}/console/", timeout=10).status_code == 404
        assert requests.get(f"{web.url}/console/login", timeout=10).status_code == 404
        assert "review console: closed" in web.log_path.read_text()
        env = {**web.deployment.env, "TRYON_CONSOLE_USERS": users}
        started = subprocess.run(
            [sys.executable, "-m", "kolors_tryon.cli", "web", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert started.returncode == 1
        assert "TRYON_CONSOLE_SECRET is not" in started.stderr
    with pytest.raises(ConsoleMisconfigured, match="TRYON_CONSOLE_SECRET"):
        create_web_app(Settings.model_validate({"console_users": users}))
