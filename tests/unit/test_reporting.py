"""Sentry events are scrubbed of tokens, photos and signed URLs before they leave."""

from __future__ import annotations

import base64
import json

import pytest

from kolors_tryon.kling import redact
from kolors_tryon.worker.reporting import scrub_breadcrumb, scrub_event

PHOTO = base64.b64encode(bytes(range(256)) * 20).decode()
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhayIsImV4cCI6MX0."
    "c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)


def test_scrub_event_removes_secrets_everywhere() -> None:
    """Messages, extras and breadcrumbs lose bearer tokens, Base64 data and URL queries."""
    event = {
        "message": f"create failed: Authorization: Bearer {JWT}",
        "extra": {"body": {"human_image": PHOTO}, "url": "https://cdn.x/a.png?sig=SECRET123"},
        "breadcrumbs": {"values": [{"message": f"sent sk-live-abcdef0123456789 and {PHOTO}"}]},
    }
    text = json.dumps(scrub_event(event))
    assert JWT not in text
    assert PHOTO[:200] not in text
    assert "SECRET123" not in text
    assert "sk-live-abcdef0123456789" not in text
    assert "create failed" in text  # the useful part stays


def test_http_breadcrumbs_lose_their_query_strings() -> None:
    """An HTTP breadcrumb keeps method and path but never the signed query."""
    crumb = {
        "type": "http",
        "category": "httplib",
        "data": {
            "url": "https://bucket.s3.amazonaws.com/r/0.png",
            "http.method": "GET",
            "http.query": "X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=deadbeef01",
            "http.fragment": "",
        },
    }
    scrubbed = scrub_breadcrumb(crumb)
    text = json.dumps(scrubbed)
    assert "deadbeef01" not in text and "AKIAEXAMPLE" not in text
    assert scrubbed["data"]["http.method"] == "GET"
    assert scrubbed["data"]["url"].endswith("/r/0.png")


@pytest.mark.parametrize(
    "secret_text",
    [
        "X-Amz-Signature=deadbeef0123456789",
        "query X-Goog-Signature=deadbeef0123456789&x=1",
        "Signature=deadbeef0123456789&Key-Pair-Id=APKAEXAMPLE",
        "sv=2024-01-01&sig=deadbeef0123456789%3D&se=2030",
    ],
)
def test_bare_signed_url_parameters_are_redacted(secret_text: str) -> None:
    """A signed URL's credential parameters are redacted even without their URL."""
    assert "deadbeef0123456789" not in redact(secret_text)
    assert "APKAEXAMPLE" not in redact(secret_text)


@pytest.mark.parametrize(
    "wrapped",
    [
        "\n".join(PHOTO[i : i + 76] for i in range(0, len(PHOTO), 76)),  # MIME wrapping
        "\\n".join(PHOTO[i : i + 76] for i in range(0, len(PHOTO), 76)),  # JSON-escaped
        PHOTO.replace("/", "\\/"),  # JSON with escaped slashes
        "\r\n".join(PHOTO[i : i + 64] for i in range(0, len(PHOTO), 64)),  # PEM-like
    ],
)
def test_wrapped_or_escaped_base64_is_redacted(wrapped: str) -> None:
    """Base64 wrapped at 76 columns or JSON-escaped is still recognised as a photo."""
    redacted = redact(f"body: {wrapped} end")
    assert PHOTO[:60] not in redacted and PHOTO[-60:] not in redacted
    assert redacted.startswith("body: ") and redacted.endswith(" end")
