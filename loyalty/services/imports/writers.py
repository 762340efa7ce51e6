"""Writer threads: an import's chunks written on connections of their own, so that the
database's work on one chunk (its rows, indexes, constraint checks and commit) overlaps the
Python work on the next.

Why: an import's Python side and the database took turns, each idle while the other worked,
on a machine whose two cores could run both. Each writer thread holds one database
connection (Django's connections are per thread) and runs one chunk at a time, each chunk in
its own database transaction, as the import's own thread would.

What the caller must guarantee: the chunks in flight at the same time touch disjoint rows
(the members import sends only chunks of new members with numbers given in the file, and
none whose numbers another chunk in flight holds), so concurrent transactions never wait on
each other's rows. A chunk is whole or absent after a crash, as before; but with chunks in
flight together, a later chunk may have committed when an earlier one failed. Running the
import again completes it (the import is idempotent), as it did before.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from django.db import connection

_STOP = object()


class Writers:
    """`count` threads taking work in submission order from one queue; `submit` returns a
    Future of the work's result. `close()` waits for the work in hand and closes the
    threads' connections."""

    def __init__(self, count: int, *, name: str = "import-writer"):
        self._work: queue.Queue = queue.Queue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def count(self) -> int:
        return len(self._threads)

    def submit(self, work: Callable[..., Any], /, **arguments) -> Future:
        future: Future = Future()
        self._work.put((future, work, arguments))
        return future

    def close(self) -> None:
        for _ in self._threads:
            self._work.put(_STOP)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        try:
            while True:
                item = self._work.get()
                if item is _STOP:
                    return
                future, work, arguments = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(work(**arguments))
                except BaseException as error:  # handed to whoever waits on the future
                    future.set_exception(error)
        finally:
            connection.close()  # this thread's own connection
