"""The pure parts of `tryon web`: callback tokens, bearer keys, settings, log masking."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from pydantic import SecretStr

from kolors_tryon.config import Settings
from kolors_tryon.jobs.validation import MAX_MESSAGE_BYTES
from kolors_tryon.web import callback_url, make_callback_token, verify_callback_token
from kolors_tryon.web.access_log import loggable_path
from kolors_tryon.web.auth import bearer_key_matches

SECRET, PREVIOUS = "secret-now", "secret-before"


def test_token_is_unpadded_urlsafe_base64_of_hmac_sha256() -> None:
    """The token is exactly HMAC-SHA256(secret, job id), URL-safe Base64, no padding."""
    digest = hmac.new(SECRET.encode(), b"sku-1234", hashlib.sha256).digest()
    expected = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    token = make_callback_token("sku-1234", SECRET)
    assert token == expected
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert make_callback_token("sku-1234", SECRET.encode()) == token


VERIFY_CASES = {
    "current-secret": ("job-1", make_callback_token("job-1", SECRET), True),
    "previous-secret": ("job-1", make_callback_token("job-1", PREVIOUS), True),
    "other-job": ("job-2", make_callback_token("job-1", SECRET), False),
    "unknown-secret": ("job-1", make_callback_token("job-1", "other"), False),
    "padded": ("job-1", make_callback_token("job-1", SECRET) + "=", False),
    "truncated": ("job-1", make_callback_token("job-1", SECRET)[:-1], False),
    "empty": ("job-1", "", False),
    "non-ascii": ("job-1", "é" * 43, False),
}


@pytest.mark.parametrize(("job_id", "token", "valid"), VERIFY_CASES.values(), ids=VERIFY_CASES)
def test_verify_accepts_current_and_previous_secret_only(
    job_id: str, token: str, valid: bool
) -> None:
    """A token verifies for its own job under the current or previous secret, nothing else."""
    assert verify_callback_token(job_id, token, [SECRET, PREVIOUS]) is valid


def test_nothing_verifies_without_a_secret() -> None:
    """No configured secret (None or empty): every token is refused."""
    token = make_callback_token("job-1", SECRET)
    assert not verify_callback_token("job-1", token, [])
    assert not verify_callback_token("job-1", token, [None, ""])
    with pytest.raises(ValueError, match="empty"):
        make_callback_token("job-1", "")


@pytest.mark.parametrize(
    "public_url", ["https://tryon.example.com", "https://tryon.example.com/", "https://e.com/p/"]
)
def test_callback_url_is_the_receiver_route(public_url: str) -> None:
    """callback_url = public URL + /kling/callback/<job id>/<token>, one slash between."""
    url = callback_url(public_url, "sku:1234.v_2-a", SECRET)
    base = public_url.rstrip("/")
    token = make_callback_token("sku:1234.v_2-a", SECRET)
    assert url == f"{base}/kling/callback/sku:1234.v_2-a/{token}"


KEYS = [SecretStr("key-a"), SecretStr("key-b")]
BEARER_CASES = {
    "first-key": ("Bearer key-a", True),
    "second-key": ("Bearer key-b", True),
    "scheme-case": ("bearer key-a", True),
    "missing": (None, False),
    "empty": ("", False),
    "wrong": ("Bearer key-c", False),
    "prefix": ("Bearer key-", False),
    "no-scheme": ("key-a", False),
    "basic": ("Basic key-a", False),
    "bearer-only": ("Bearer", False),
    "non-ascii": ("Bearer kéy-a", False),
}


@pytest.mark.parametrize(("header", "ok"), BEARER_CASES.values(), ids=BEARER_CASES)
def test_bearer_key_matches_any_configured_key(header: str | None, ok: bool) -> None:
    """`Authorization: Bearer <key>` with any configured key, and nothing else."""
    assert bearer_key_matches(header, KEYS) is ok
    assert not bearer_key_matches(header, [])


@pytest.mark.parametrize(
    ("raw", "keys"),
    [("ka,kb", ["ka", "kb"]), (" ka , kb ,, ", ["ka", "kb"]), ("", []), (["kx"], ["kx"])],
)
def test_api_keys_are_read_comma_separated(raw: object, keys: list[str]) -> None:
    """TRYON_API_KEYS=key1,key2: a list of secrets, blanks dropped, never printed."""
    settings = Settings.model_validate({"api_keys": raw})
    assert [k.get_secret_value() for k in settings.api_keys] == keys
    assert all(isinstance(k, SecretStr) for k in settings.api_keys)
    assert not any(key in repr(settings) for key in keys if len(key) > 1)


def test_api_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable is read as a comma-separated string, not as JSON."""
    monkeypatch.setenv("TRYON_API_KEYS", "k1,k2")
    monkeypatch.setenv("TRYON_CALLBACK_SECRET", "s")
    settings = Settings(_env_file=None)
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert settings.callback_secret is not None
    assert settings.callback_secret.get_secret_value() == "s"


def test_web_defaults_fit_two_10mb_images_as_base64() -> None:
    """The default body cap holds two 10 MB images in Base64 plus JSON, under the queue's."""
    settings = Settings.model_validate({})
    two_images = 2 * 4 * -(-10 * 1024 * 1024 // 3)
    assert two_images + 64 * 1024 < settings.web_max_body_bytes <= MAX_MESSAGE_BYTES
    assert settings.api_keys == [] and settings.callback_secret is None
    assert settings.public_url is None and settings.web_max_batch_jobs == 100


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/kling/callback/job-1/SECRETTOKEN", "/kling/callback/job-1/[token]"),
        ("/kling/callback/job-1", "/kling/callback/job-1"),
        ("/v1/jobs/job-1", "/v1/jobs/job-1"),
    ],
)
def test_access_log_masks_callback_tokens(path: str, logged: str) -> None:
    """The access log never shows a callback URL's token."""
    assert loggable_path(path) == logged
