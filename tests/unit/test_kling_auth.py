"""Kling credentials: static keys and HS256 JWTs minted on demand and renewed in time."""

from __future__ import annotations

import threading

import jwt
import pytest

from harness import concurrently
from kolors_tryon.config import SANDBOX_API_KEY, Settings
from kolors_tryon.kling import JwtAuth, KlingAuth, StaticKeyAuth, auth_from_settings

AK = "ak-unit"
SK = "sk-unit-secret-long-enough-for-hs256-keys"


class FakeClock:
    """A settable clock, so token times are exact."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read TRYON_* variables: keep the developer's own out of these tests."""
    for name in ("API_KEY", "ACCESS_KEY", "SECRET_KEY", "JWT_LIFETIME"):
        monkeypatch.delenv(f"TRYON_KLING_{name}", raising=False)


def _token(auth: KlingAuth) -> str:
    header = auth.authorization()
    assert header.startswith("Bearer ")
    return header.removeprefix("Bearer ")


def test_static_key_header_and_no_renewal() -> None:
    """A static key is sent as-is and cannot be renewed."""
    auth = StaticKeyAuth("sk-abc")
    assert auth.authorization() == "Bearer sk-abc"
    assert auth.renew() is False
    assert StaticKeyAuth("Bearer sk-abc").authorization() == "Bearer sk-abc"


def test_static_key_rejects_empty() -> None:
    """An empty key is a configuration mistake caught at construction."""
    with pytest.raises(ValueError, match="empty"):
        StaticKeyAuth("  ")


def test_jwt_header_and_payload() -> None:
    """The JWT is HS256 with typ JWT and carries iss, exp = now+lifetime, nbf = now-5."""
    clock = FakeClock()
    token = _token(JwtAuth(AK, SK, lifetime=1800, clock=clock))
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(
        token, SK, algorithms=["HS256"], options={"verify_exp": False, "verify_nbf": False}
    )
    now = int(clock.now)
    assert claims == {"iss": AK, "exp": now + 1800, "nbf": now - 5}


def test_jwt_cached_while_fresh() -> None:
    """The same token is reused while more than renew_margin seconds remain."""
    clock = FakeClock()
    auth = JwtAuth(AK, SK, lifetime=1800, renew_margin=300, clock=clock)
    first = auth.authorization()
    clock.now += 1800 - 301
    assert auth.authorization() == first


def test_jwt_reminted_near_expiry() -> None:
    """Within renew_margin of exp, a new token with a later exp is minted."""
    clock = FakeClock()
    auth = JwtAuth(AK, SK, lifetime=1800, renew_margin=300, clock=clock)
    first = _token(auth)
    clock.now += 1800 - 299
    second = _token(auth)
    assert second != first
    assert jwt.decode(second, options={"verify_signature": False})["exp"] == int(clock.now) + 1800


def test_jwt_renew_forces_a_new_token() -> None:
    """renew() re-mints at once and says a fresh token is ready."""
    clock = FakeClock()
    auth = JwtAuth(AK, SK, clock=clock)
    first = auth.authorization()
    clock.now += 1
    assert auth.renew() is True
    assert auth.authorization() != first


def test_jwt_thread_safe_single_token() -> None:
    """Concurrent callers share one cached token instead of racing to mint."""
    auth = JwtAuth(AK, SK, clock=FakeClock())
    seen: set[str] = set()
    lock = threading.Lock()

    def grab() -> None:
        for _ in range(50):
            value = auth.authorization()
            with lock:
                seen.add(value)

    concurrently(grab, threads=8)
    assert len(seen) == 1


@pytest.mark.parametrize(("lifetime", "margin"), [(0, 0), (100, 100), (100, 200), (1800, -1)])
def test_jwt_rejects_bad_lifetimes(lifetime: int, margin: int) -> None:
    """A lifetime not longer than the renew margin would re-mint on every call."""
    with pytest.raises(ValueError, match="lifetime"):
        JwtAuth(AK, SK, lifetime=lifetime, renew_margin=margin)


def test_repr_hides_secrets() -> None:
    """Neither repr shows a key, a secret or a token."""
    static = StaticKeyAuth("sk-top-secret")
    jwt_auth = JwtAuth(AK, SK)
    jwt_auth.authorization()
    assert "sk-top-secret" not in repr(static)
    assert AK not in repr(jwt_auth)
    assert SK not in repr(jwt_auth)
    assert "eyJ" not in repr(jwt_auth)


def test_auth_from_settings_static_key() -> None:
    """A configured API key wins: static bearer."""
    auth = auth_from_settings(Settings(kling_api_key="sk-from-env", _env_file=None))
    assert isinstance(auth, StaticKeyAuth)
    assert auth.authorization() == "Bearer sk-from-env"


def test_auth_from_settings_jwt() -> None:
    """AK/SK settings give a JwtAuth using the configured lifetime."""
    settings = Settings(
        kling_access_key=AK, kling_secret_key=SK, kling_jwt_lifetime=600, _env_file=None
    )
    auth = auth_from_settings(settings)
    assert isinstance(auth, JwtAuth)
    claims = jwt.decode(_token(auth), SK, algorithms=["HS256"])
    assert claims["iss"] == AK
    assert claims["exp"] - claims["nbf"] == 605


def test_auth_from_settings_sandbox() -> None:
    """No credentials at all: the emulator's sandbox key."""
    auth = auth_from_settings(Settings(_env_file=None))
    assert auth.authorization() == f"Bearer {SANDBOX_API_KEY}"
