"""web.slots: preflight's bounded daemon threads, refused at once when full."""

from __future__ import annotations

import asyncio
import threading

import pytest

from kolors_tryon.web.slots import DaemonSlots, SlotsFull


def test_a_full_set_refuses_at_once_and_a_slot_frees_when_its_thread_ends() -> None:
    """Past `size` calls: SlotsFull without waiting; a cancelled request keeps its slot
    taken until its thread really ends."""
    release = threading.Event()
    slots = DaemonSlots(2, "test-slots")

    async def scenario() -> None:
        first = asyncio.ensure_future(slots.run(release.wait, 30))
        second = asyncio.ensure_future(slots.run(release.wait, 30))
        await asyncio.sleep(0.05)
        with pytest.raises(SlotsFull):
            await slots.run(release.wait, 30)
        first.cancel()  # the client went away; its fetch goes on
        await asyncio.sleep(0.05)
        assert slots.busy == 2
        release.set()
        assert await second is True
        while slots.busy:
            await asyncio.sleep(0.01)
        assert await slots.run(lambda: "free again") == "free again"

    asyncio.run(scenario())


def test_the_call_runs_on_a_daemon_thread_and_its_error_comes_back() -> None:
    """The work runs on a daemon thread (a stopping web never waits for it); its
    exception reaches the awaiting request as raised."""
    slots = DaemonSlots(1, "test-slots")

    def where() -> tuple[bool, str]:
        thread = threading.current_thread()
        return thread.daemon, thread.name

    def fail() -> None:
        raise ValueError("bad image")

    async def scenario() -> None:
        assert await slots.run(where) == (True, "test-slots")
        with pytest.raises(ValueError, match="bad image"):
            await slots.run(fail)
        assert slots.busy == 0

    asyncio.run(scenario())
