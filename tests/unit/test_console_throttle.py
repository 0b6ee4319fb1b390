"""Login throttling of the review console, on an injected clock (no sleeping)."""

from __future__ import annotations

from harness import SettableClock
from kolors_tryon.web.console.throttle import ADDRESS_FACTOR, LoginThrottle


def test_a_name_waits_twice_as_long_after_each_failure_beyond_the_free_ones() -> None:
    """Five failures are free; the next try waits 2 s, then 4 s, 8 s... capped; a success
    clears the name."""
    clock = SettableClock(1000.0)
    throttle = LoginThrottle(free_failures=5, base=2.0, cap=10.0, clock=clock)
    for _ in range(5):
        assert throttle.wait_for("ana", "10.0.0.1") == 0
        throttle.failed("ana", "10.0.0.1")
    assert throttle.wait_for("ana", "10.0.0.2") == 2.0  # the name, from anywhere
    throttle.failed("ana", "10.0.0.1")
    assert throttle.wait_for("ana", "10.0.0.1") == 4.0
    throttle.failed("ana", "10.0.0.1")
    throttle.failed("ana", "10.0.0.1")
    assert throttle.wait_for("ana", "10.0.0.1") == 10.0  # the cap
    clock.advance(10.0)
    assert throttle.wait_for("ana", "10.0.0.1") == 0
    throttle.succeeded("ana", "10.0.0.1")
    assert throttle.wait_for("ana", "10.0.0.3") == 0


def test_an_address_trying_many_names_is_throttled_too() -> None:
    """One address guessing across names waits after ADDRESS_FACTOR times the free failures."""
    clock = SettableClock(0.0)
    throttle = LoginThrottle(free_failures=2, base=1.0, cap=60.0, clock=clock)
    for i in range(2 * ADDRESS_FACTOR - 1):
        throttle.failed(f"name-{i}", "10.0.0.9")
    assert throttle.wait_for("someone-new", "10.0.0.9") == 0
    throttle.failed("another", "10.0.0.9")
    assert throttle.wait_for("someone-new", "10.0.0.9") == 1.0
    assert throttle.wait_for("someone-new", "10.0.0.8") == 0
