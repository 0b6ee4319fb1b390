"""Standard Webhooks signatures on Kling's callbacks: valid, rotated, stale, tampered,
and the emulator's signing agrees with the service's check."""

from __future__ import annotations

import base64

from kolors_tryon.emulator.callbacks import signature_headers
from kolors_tryon.kling.signatures import sign_callback, verify_callback_signature

OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 32).decode()
BODY = b'{"task_id":"1","task_status":"succeed"}'
NOW = 1_800_000_000


def headers(secret: str, *, at: int = NOW, body: bytes = BODY) -> dict[str, str]:
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(at),
        "webhook-signature": sign_callback(secret, "msg_1", at, body),
    }


def test_a_signature_under_either_secret_of_a_rotation_is_valid() -> None:
    """Old and new secrets both verify while both are configured."""
    assert verify_callback_signature(headers(OLD), BODY, [NEW, OLD], now=NOW) is None
    assert verify_callback_signature(headers(NEW), BODY, [NEW, OLD], now=NOW) is None


def test_what_fails_is_refused_with_its_reason() -> None:
    """Wrong secret, tampered body, a stamp over 5 minutes away, missing headers."""
    assert "no signature" in str(verify_callback_signature(headers(OLD), BODY, [NEW], now=NOW))
    tampered = verify_callback_signature(headers(NEW), BODY + b" ", [NEW], now=NOW)
    assert "no signature" in str(tampered)
    stale = verify_callback_signature(headers(NEW, at=NOW - 301), BODY, [NEW], now=NOW)
    assert "tolerance" in str(stale)
    assert verify_callback_signature(headers(NEW, at=NOW - 299), BODY, [NEW], now=NOW) is None
    assert "missing" in str(verify_callback_signature({}, BODY, [NEW], now=NOW))


def test_the_emulator_signs_as_the_service_verifies() -> None:
    """The emulator's headers (two secrets in rotation) pass the service's check."""
    signed = signature_headers((OLD, NEW), BODY)
    now = int(signed["webhook-timestamp"])
    assert len(signed["webhook-signature"].split()) == 2
    assert verify_callback_signature(signed, BODY, [NEW], now=now) is None
    assert signature_headers((), BODY) == {}
