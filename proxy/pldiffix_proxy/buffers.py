"""How much of its clients' input the front holds: per client and for the whole process.

A client's messages are read ahead of its session (so that a client gone mid-query is noticed)
into an inbox bounded in bytes. Room for a message is reserved, from the client's bound and from
the process-wide budget, as soon as its header is read and before its body is: a client whose
inbox is full, or that would take the process over its budget, is simply not read from until
room is freed (TCP then holds the client back). Reserving whole messages, rather than bytes as
they come, means a client never waits while holding half a message: what is reserved is always
completed by its own client, so clients cannot wedge one another.
"""

from __future__ import annotations

import asyncio
import collections

from pldiffix_proxy.codec import Message, Reader

DEFAULT_MAX_CLIENT_BUFFER = 16 << 20
DEFAULT_MAX_TOTAL_BUFFER = 256 << 20
READ_CHUNK = 65_536


class MemoryBudget:
    """Bytes of client input the whole process may hold; waiters are served first come first
    served, so a large message is not starved by a stream of small ones."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    async def acquire(self, size: int) -> None:
        if not self._waiters and self.used + size <= self.limit:
            self.used += size
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((size, waiter))
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(size)  # granted just as it was cancelled
            else:
                self._waiters.remove((size, waiter))
                self._grant()
            raise

    def release(self, size: int) -> None:
        self.used -= size
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            size, waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if self.used + size > self.limit:
                return
            self._waiters.popleft()
            self.used += size
            waiter.set_result(None)


class ClientInbox:
    """One client's messages read ahead of its session, at most `limit` bytes of them (or one
    message of any admitted size when nothing else is held). `None` marks the client's end."""

    def __init__(self, budget: MemoryBudget, limit: int):
        self.budget = budget
        self.limit = limit
        self.held = 0  # reserved: queued messages plus the one being read
        self._queue: collections.deque[Message | None] = collections.deque()
        self._sizes: collections.deque[int] = collections.deque()
        self._changed = asyncio.Event()
        self._closed = False

    async def reserve(self, size: int) -> None:
        """Waits until `size` bytes fit this client's bound, then takes them from the budget."""
        while self.held and self.held + size > self.limit:
            self._changed.clear()
            await self._changed.wait()
        self.held += size
        try:
            await self.budget.acquire(size)
        except BaseException:
            self.held -= size
            raise

    def put(self, message: Message, reserved: int) -> None:
        """Queues a message for which `reserved` bytes were reserved."""
        self._queue.append(message)
        self._sizes.append(reserved)
        self._changed.set()

    def cancel_reservation(self, size: int) -> None:
        self.held -= size
        self.budget.release(size)
        self._changed.set()

    def close(self) -> None:
        """The client has gone: no more messages; what is still queued stays readable."""
        if not self._closed:
            self._closed = True
            self._queue.append(None)
            self._sizes.append(0)
            self._changed.set()

    def empty(self) -> bool:
        return not self._queue

    async def get(self) -> Message | None:
        while not self._queue:
            self._changed.clear()
            await self._changed.wait()
        message = self._queue[0]
        if message is None:
            return None  # stays queued: every later get sees the end too
        self._queue.popleft()
        self.cancel_reservation(self._sizes.popleft())
        return message

    def release_all(self) -> None:
        """Returns whatever is still reserved to the budget (the session has ended)."""
        self._queue.clear()
        self._sizes.clear()
        if self.held:
            self.budget.release(self.held)
            self.held = 0


async def read_into(
    reader: asyncio.StreamReader, framing: Reader, inbox: ClientInbox, first: list[Message]
) -> None:
    """Reads a client's stream into its inbox, reserving room for each message before its body
    is read. `first` are messages already read (behind the startup exchange)."""
    for message in first:
        size = 5 + len(message.body)
        await inbox.reserve(size)
        inbox.put(message, size)
    reserved = 0  # for the message begun at the head of the framing buffer
    while True:
        waiting = framing.incomplete_length()
        if waiting is not None and not reserved:
            await inbox.reserve(waiting)
            reserved = waiting
        data = await reader.read(READ_CHUNK)
        if not data:
            if reserved:
                inbox.cancel_reservation(reserved)
            return
        framing.feed(data)
        for message in framing.messages():
            size = 5 + len(message.body)
            if reserved:
                reserved = 0  # the message reserved for is the first one out
            else:
                await inbox.reserve(size)
            inbox.put(message, size)
