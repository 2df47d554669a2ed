"""How much client input the front holds (proxy/pldiffix_proxy/buffers.py), without a server."""

from __future__ import annotations

import asyncio

import pytest

from pldiffix_proxy import buffers, codec
from pldiffix_proxy.codec import Message


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_the_budget_serves_waiters_first_come_first_served():
    async def scenario() -> list[str]:
        budget = buffers.MemoryBudget(100)
        await budget.acquire(60)
        order: list[str] = []

        async def take(name: str, size: int) -> None:
            await budget.acquire(size)
            order.append(name)

        big = asyncio.ensure_future(take("big", 90))
        await _settle()
        small = asyncio.ensure_future(take("small", 10))  # would fit now, but queues behind
        await _settle()
        assert order == [] and budget.used == 60
        budget.release(60)
        await asyncio.gather(big, small)
        assert budget.used == 100
        return order

    assert _run(scenario()) == ["big", "small"]


def test_a_cancelled_waiter_leaves_nothing_taken():
    async def scenario() -> int:
        budget = buffers.MemoryBudget(10)
        await budget.acquire(10)
        waiter = asyncio.ensure_future(budget.acquire(5))
        await _settle()
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        budget.release(10)
        return budget.used

    assert _run(scenario()) == 0


def test_an_inbox_past_its_bound_waits_for_its_session():
    async def scenario() -> None:
        budget = buffers.MemoryBudget(1000)
        inbox = buffers.ClientInbox(budget, 100)
        await inbox.reserve(300)  # larger than the bound: taken, since nothing else is held
        inbox.put(Message(b"Q", b"x" * 295), 300)
        second = asyncio.ensure_future(inbox.reserve(10))
        await _settle()
        assert not second.done() and budget.used == 300
        assert (await inbox.get()).body == b"x" * 295
        await second
        assert (inbox.held, budget.used) == (10, 10)
        inbox.release_all()
        assert budget.used == 0

    _run(scenario())


def test_the_end_of_a_client_stays_visible_to_every_get():
    async def scenario() -> None:
        inbox = buffers.ClientInbox(buffers.MemoryBudget(100), 100)
        await inbox.reserve(5)
        inbox.put(Message(b"S", b""), 5)
        inbox.close()
        assert (await inbox.get()).kind == b"S"
        assert await inbox.get() is None
        assert await inbox.get() is None

    _run(scenario())


def test_room_for_a_message_is_reserved_before_its_body_is_read():
    """The reader takes a message's whole size from the budget once its header is in; a
    client over the budget is not read further."""

    async def scenario() -> None:
        budget = buffers.MemoryBudget(200_000)
        budget.used = 150_000  # other clients
        inbox = buffers.ClientInbox(budget, 1 << 20)
        stream = asyncio.StreamReader()
        big = codec.query("x" * 100_000)
        stream.feed_data(codec.SYNC + big[:10])
        reading = asyncio.ensure_future(buffers.read_into(stream, codec.Reader(1 << 20), inbox, []))
        await _settle()
        assert (await inbox.get()).kind == b"S"
        assert budget.used == 150_000 and not reading.done()  # waiting for the budget
        stream.feed_data(big[10:])
        await _settle()
        assert inbox.empty()
        budget.release(150_000)
        message = await inbox.get()
        assert message.raw == big
        stream.feed_eof()
        await reading
        assert budget.used == 0

    _run(scenario())


def test_a_message_too_large_is_refused_before_anything_is_reserved():
    async def scenario() -> None:
        budget = buffers.MemoryBudget(1 << 20)
        inbox = buffers.ClientInbox(budget, 1 << 20)
        stream = asyncio.StreamReader()
        stream.feed_data(b"Q" + (2 << 20).to_bytes(4, "big"))
        with pytest.raises(codec.ProtocolError, match="out of bounds"):
            await buffers.read_into(stream, codec.Reader(1 << 20), inbox, [])
        assert budget.used == 0

    _run(scenario())
