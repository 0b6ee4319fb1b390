"""Claim owners under a worker's holder id, and the lease a fresh claim gets."""

from __future__ import annotations

import pytest

from kolors_tryon.config import Settings
from kolors_tryon.pipeline import holder


def test_outside_a_worker_owners_are_plain_and_leases_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With no heartbeat to renew them, claims keep the long submit lease."""
    monkeypatch.setattr(holder, "_holder", None)
    settings = Settings.model_validate({"submit_lease_seconds": 180, "claim_lease_seconds": 10})
    assert holder.current_holder() is None
    assert "." not in holder.new_owner()
    assert holder.fresh_lease(settings) == 180


def test_a_worker_claims_under_its_holder_id_with_the_short_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Owners start with the holder id (what the heartbeat renews and a hand-back takes),
    fit the 64-character owner column, and get the short lease."""
    monkeypatch.setattr(holder, "_holder", None)
    settings = Settings.model_validate({"submit_lease_seconds": 180, "claim_lease_seconds": 10})
    chosen = holder.become_holder()
    owner = holder.new_owner()
    assert owner.startswith(f"{chosen}.") and len(owner) <= 64
    assert holder.new_owner() != owner
    assert holder.fresh_lease(settings) == 10
