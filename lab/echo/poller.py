"""The async server's readiness poller: epoll on Linux, any `selectors` selector elsewhere.

server_async speaks epoll's interface (register/modify/unregister by fd, poll(seconds) giving
(fd, events) pairs). On Linux that is select.epoll itself, so the hot loop pays for no layer;
macOS and the BSDs have no epoll, so SelectorPoll offers the same calls over the platform's
best selector (kqueue there), which keeps lab/echo runnable on a laptop as the README says.
"""

from __future__ import annotations

import errno
import select
import selectors

HAVE_EPOLL = hasattr(select, "epoll")

if HAVE_EPOLL:
    IN = select.EPOLLIN
    OUT = select.EPOLLOUT
    HANGUP = select.EPOLLERR | select.EPOLLHUP
else:
    IN = selectors.EVENT_READ
    OUT = selectors.EVENT_WRITE
    HANGUP = 0  # selectors report errors and hang-ups as readable/writable


class SelectorPoll:
    """epoll's calls over a selectors selector. An fd modified to no events is parked (a
    selector cannot hold one with none) and registered again when it wants some."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.parked: set[int] = set()

    def register(self, fd: int, events: int) -> None:
        if events:
            self.selector.register(fd, events)
        else:
            self.parked.add(fd)

    def modify(self, fd: int, events: int) -> None:
        if fd in self.parked:
            self.parked.discard(fd)
            self.register(fd, events)
        elif not events:
            self.unregister(fd)
            self.parked.add(fd)
        else:
            self.selector.modify(fd, events)

    def unregister(self, fd: int) -> None:
        if fd in self.parked:
            self.parked.discard(fd)
            return
        try:
            self.selector.unregister(fd)
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, f"fd {fd} is not registered") from None

    def poll(self, timeout: float = -1) -> list[tuple[int, int]]:
        """Ready (fd, events) pairs; timeout in seconds, negative = wait for ever."""
        ready = self.selector.select(None if timeout < 0 else timeout)
        return [(key.fd, events) for key, events in ready]

    def close(self) -> None:
        self.selector.close()


def new_poller() -> select.epoll | SelectorPoll:
    return select.epoll() if HAVE_EPOLL else SelectorPoll()
