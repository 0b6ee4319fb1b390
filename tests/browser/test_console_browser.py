"""The review console in a real browser (headless Chromium, Debian's build, driven by
Playwright) against a real `tryon web`, a worker and the emulator: log in, watch jobs
reach their end, open a job and see its three images, approve it, filter the table.

A screenshot of each page goes to test-artifacts/console/; with TRYON_DOCS_SCREENSHOTS=1
they are copied to docs/console/ too (the manual's pictures, docs/console.md).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from console_service import PASSWORDS, console_env
from harness import publish_raw
from web_service import Web, sample_job, web_stack

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "console"
DOCS = ROOT / "docs" / "console"
CHROMIUM = Path(os.environ.get("TRYON_TEST_CHROMIUM", "/usr/bin/chromium"))
JOBS = ("look-0", "look-1", "look-2")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    """The service with the console open and a worker; no job yet."""
    with web_stack(tmp_path_factory.mktemp("browser"), extra_env=console_env()) as web:
        web.deployment.start_worker(concurrency=2)
        yield web


@pytest.fixture(scope="module")
def page(web: Web) -> Iterator[Page]:
    """One Chromium page, logged out."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        browser.close()


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("TRYON_DOCS_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS / path.name)


def test_a_reviewer_watches_jobs_end_opens_one_approves_it_and_filters(
    web: Web, page: Page
) -> None:
    """The whole walk of a reviewer, each page photographed."""
    p = page
    p.goto(f"{web.url}/console/")
    assert "/console/login" in p.url
    _shot(p, "login")
    p.fill("input[name=name]", "ana")
    p.fill("input[name=password]", PASSWORDS["ana"])
    p.click("button[type=submit]")
    expect(p.locator("h1")).to_have_text("Overview")

    # Jobs arrive (three through the HTTP door, one invalid straight onto the queue)...
    for index, job_id in enumerate(JOBS):
        job = {**sample_job(job_id), "metadata": {"sku": f"SKU-{index}"}}
        assert web.post_jobs(job).status_code == 202
    bad = {**sample_job("look-bad"), "model_name": "no-such-model"}
    publish_raw(web.deployment.settings, json.dumps(bad))
    # ...and the table shows them reaching their end.
    p.goto(f"{web.url}/console/jobs")
    for _ in range(120):
        ended = p.locator("td.state-succeeded").count()
        if ended == len(JOBS) and p.locator("td.state-rejected").count() == 1:
            break
        p.wait_for_timeout(1000)
        p.reload()
    expect(p.locator("td.state-succeeded")).to_have_count(len(JOBS))
    _shot(p, "jobs")
    p.goto(f"{web.url}/console/")
    expect(p.locator("[data-ended=succeeded]")).to_have_text(str(len(JOBS)))
    _shot(p, "overview")
    p.goto(f"{web.url}/console/jobs?view=gallery")
    expect(p.locator(".tile")).to_have_count(len(JOBS) + 1)
    # Three tiles of three images each (the invalid job kept no photos): all loaded.
    p.wait_for_function(
        "() => { const images = [...document.querySelectorAll('.tile img')];"
        " return images.length === 9 && images.every(i => i.complete && i.naturalWidth > 0); }"
    )
    _shot(p, "gallery")

    # One job: its three images load, and it can be approved.
    p.goto(f"{web.url}/console/jobs/look-0")
    for alt in ("person", "garment", "result"):
        image = p.locator(f".images img[alt={alt}]")
        expect(image).to_be_visible()
        width = image.evaluate("img => img.complete ? img.naturalWidth : 0")
        assert width > 0, f"the {alt} image did not load"
    _shot(p, "job")
    p.click("button.approve")
    expect(p.locator("h1 .badge.review-approved")).to_contain_text("approved by ana")
    expect(p.locator("button.approve")).to_have_count(0)
    _shot(p, "job-approved")

    # The table, filtered by state and by a metadata field.
    p.goto(f"{web.url}/console/jobs")
    p.select_option("select[name=state]", "rejected")
    p.click("form.filters button")
    expect(p.locator("tr[data-job]")).to_have_count(1)
    expect(p.locator("tr[data-job=look-bad]")).to_have_count(1)
    p.goto(f"{web.url}/console/jobs?field=sku&value=SKU-1")
    expect(p.locator("tr[data-job]")).to_have_count(1)
    expect(p.locator("tr[data-job=look-1]")).to_have_count(1)
    _shot(p, "jobs-filtered")
    p.goto(f"{web.url}/console/accounts")
    expect(p.locator("h1")).to_have_text("Accounts")
    _shot(p, "accounts")
