"""Sentry events are scrubbed of tokens, photos and signed URLs before they leave."""

from __future__ import annotations

import base64
import json

from kolors_tryon.worker.reporting import scrub_event

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
