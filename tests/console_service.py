"""Shared scaffolding of the review console's tests: `tryon web` with the console open,
a worker and the emulator, and a console session over plain HTTP.

Three users: `ana` sees the producer `default` (every job today), `bob` sees only the
producer `other` (none of today's jobs), `ops` is an admin.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from harness import WebhookReceiver, publish_raw, wait_until
from kolors_tryon.web.console.users import hash_password
from web_service import Web, sample_job, web_stack

PASSWORDS = {"ana": "ana-password-1", "bob": "bob-password-2", "ops": "ops-password-3"}
SECRET = "console-secret-0123456789abcdef0123456789"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def console_env() -> dict[str, str]:
    """The console's settings: its three users and the secret signing their cookies."""
    users = [
        {"name": "ana", "password_hash": hash_password(PASSWORDS["ana"]), "producers": ["default"]},
        {"name": "bob", "password_hash": hash_password(PASSWORDS["bob"]), "producers": ["other"]},
        {"name": "ops", "password_hash": hash_password(PASSWORDS["ops"]), "admin": True},
    ]
    return {"TRYON_CONSOLE_USERS": json.dumps(users), "TRYON_CONSOLE_SECRET": SECRET}


@dataclass
class Session:
    """A console session held by hand: the cookie is Secure, and requests (rightly) never
    sends a Secure cookie over plain HTTP, so it travels in a header of ours."""

    url: str
    cookie: str
    csrf: str

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(
            self.url + path, headers=self.headers, allow_redirects=False, timeout=30, **kwargs
        )

    def post(self, path: str, data: dict[str, str], *, csrf: bool = True) -> requests.Response:
        form = {**data, "csrf": self.csrf} if csrf else data
        return requests.post(
            self.url + path, data=form, headers=self.headers, allow_redirects=False, timeout=30
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Cookie": f"tryon_console={self.cookie}"} if self.cookie else {}


def _cookie_of(response: requests.Response) -> str:
    header = response.headers.get("set-cookie", "")
    match = re.match(r"tryon_console=([^;]*)", header)
    assert match, f"no session cookie in {header!r}"
    return match.group(1)


def login_form(url: str) -> Session:
    """An anonymous session: the login page's cookie and CSRF token."""
    page = requests.get(f"{url}/console/login", timeout=30)
    assert page.status_code == 200, page.text[:300]
    match = _CSRF.search(page.text)
    assert match
    return Session(url, _cookie_of(page), match.group(1))


def try_login(url: str, name: str, password: str) -> requests.Response:
    anonymous = login_form(url)
    return anonymous.post("/console/login", {"name": name, "password": password})


def login(url: str, name: str) -> Session:
    """A logged-in session of `name`, with the CSRF token its pages carry."""
    answer = try_login(url, name, PASSWORDS[name])
    assert answer.status_code == 303, answer.text[:300]
    session = Session(url, _cookie_of(answer), "")
    page = session.get("/console/")
    assert page.status_code == 200
    match = _CSRF.search(page.text)
    assert match
    session.csrf = match.group(1)
    return session


@dataclass
class ConsoleStack:
    web: Web
    ids: list[str]
    hooks: WebhookReceiver


#: The stack's job whose producer asked for the `reviewed` webhook.
REVIEW_HOOKED = "console-1"


@contextmanager
def console_stack(tmp: Path, jobs: int = 3) -> Iterator[ConsoleStack]:
    """`tryon web` with the console, a worker, `jobs` sample jobs (through the HTTP door;
    `console-1` wants the `reviewed` webhook) and one invalid job `console-bad`; yields
    once every job has ended."""
    hooks = WebhookReceiver().start()
    env = {**console_env(), "TRYON_WEBHOOK_ALLOW_PRIVATE": "true"}
    try:
        with web_stack(tmp, extra_env=env) as web:
            web.deployment.start_worker(concurrency=2)
            ids = [f"console-{i}" for i in range(jobs)]
            for job_id in ids:
                job = {**sample_job(job_id), "metadata": {"sku": f"SKU-{job_id[-1]}"}}
                if job_id == REVIEW_HOOKED:
                    job.update(callback_url=hooks.url(), webhook_events=["reviewed"])
                assert web.post_jobs(job).status_code == 202
            # Past the door, straight onto the queue: the worker records it `rejected`.
            bad = {**sample_job("console-bad"), "model_name": "no-such-model"}
            publish_raw(web.deployment.settings, json.dumps(bad))
            store = web.deployment.store()
            try:
                wait_until(
                    lambda: all(
                        (r := store.get(job_id)) is not None and r.terminal
                        for job_id in [*ids, "console-bad"]
                    ),
                    120,
                    0.5,
                    "the console's jobs to end",
                )
            finally:
                store.dispose()
            yield ConsoleStack(web, ids, hooks)
    finally:
        hooks.stop()
