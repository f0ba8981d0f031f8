"""Settlements and voids the quota store could not take, kept until it does.

When :meth:`~bedrock_gateway.quota.ledger.QuotaStore.settle` fails (the store is down, paused or
slow), or a reservation fails without an answer (it may still arrive and hold), the enforcer
hands the operation to its :class:`Journal` instead of retrying on the request's thread. The
journal appends it to a local file (one JSON line, ``fsync``-ed before the call returns) and a
background thread applies it when the store answers again — with a growing pause between tries,
and at once when the enforcer sees the store answer. A gateway that restarts replays what its
journal still holds. Every store operation is idempotent per call id, so an entry applied
twice (its first try did reach the store, or the process died before marking it done) counts
once.

File: ``{"call", "charges", "actual", "now_ms", "slot"}`` per operation (``actual`` is ``null`` for
a void), ``{"done": call}`` once applied; the file is emptied when nothing is left. A torn last
line (a crash mid-write) is skipped. Each process locks its file (``flock``): a second process
given the same path uses ``path.1`` (``.2``, …), and every journal adopts, when it starts, the
unlocked siblings that processes which have exited left behind.

Without a path the journal keeps its entries in memory: they survive an outage of the store but
not a restart of the gateway.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bedrock_gateway.quota.ledger import Charge, QuotaStore

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no locking, one process per path
    fcntl = None  # type: ignore[assignment]

__all__ = ["Journal", "Pending"]

log = logging.getLogger("bedrock_gateway.quota")

_SIBLINGS = 64  # path.1 .. path.64: one per process sharing a path
_WAKE_GAP_S = 0.05  # replay passes a wake may start: at most one per this long


@dataclass(frozen=True, slots=True)
class Pending:
    """One store operation waiting to be applied: a settlement, or (``actual is None``) a void."""

    call: str
    charges: tuple[Charge, ...]
    actual: tuple[int, ...] | None
    now_ms: int
    slot: int

    def apply(self, store: QuotaStore) -> None:
        if self.actual is None:
            store.void(self.call, self.charges, self.now_ms, self.slot)
        else:
            store.settle(self.call, self.charges, self.actual, self.now_ms)

    def line(self) -> bytes:
        charges = [[c.key, c.amount, c.capacity, c.period_ms, c.expires_ms]
                   for c in self.charges]
        return (json.dumps({"call": self.call, "charges": charges,
                            "actual": None if self.actual is None else list(self.actual),
                            "now_ms": self.now_ms, "slot": self.slot},
                           separators=(",", ":"), ensure_ascii=False) + "\n").encode()

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Pending:
        actual = data["actual"]
        return cls(str(data["call"]),
                   tuple(Charge(str(k), int(a), int(c), int(p), int(e))
                         for k, a, c, p, e in data["charges"]),
                   None if actual is None else tuple(int(x) for x in actual),
                   int(data["now_ms"]), int(data["slot"]))


def _read(fd: int) -> dict[str, Pending]:
    """The entries of a journal file not yet marked done, in order."""
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    entries: dict[str, Pending] = {}
    for raw in b"".join(chunks).splitlines():
        try:
            data = json.loads(raw)
            if "done" in data:
                entries.pop(str(data["done"]), None)
            else:
                entry = Pending.parse(data)
                entries[entry.call] = entry
        except (ValueError, TypeError, KeyError) as exc:  # a torn line: the write never ended
            log.warning("quota journal: skipping an unreadable line %r: %r", raw[:200], exc)
    return entries


def _lock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


class Journal:
    """Store operations to apply later: in the file at ``path`` (durable) or in memory.

    :meth:`attach` gives it the store and starts retrying in the background whenever entries
    are pending; ``retry_s`` is the first pause between tries and the longest. Call
    :meth:`replay` to apply what is pending now (tests, shutdown); :meth:`wake` to try again at
    once (the enforcer does when the store answers it).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 retry_s: tuple[float, float] = (0.05, 10.0), background: bool = True) -> None:
        self.path: Path | None = None
        self._fd: int | None = None
        self._retry_s = retry_s
        self._background = background
        self._mutex = threading.Lock()  # the queue and the file
        self._replaying = threading.Lock()  # one replay at a time
        self._wake = threading.Event()
        self._queue: dict[str, Pending] = {}
        self._store: QuotaStore | None = None
        self._worker: threading.Thread | None = None
        self._closed = False
        self._failing = False
        self.pending = 0  # how many entries wait (read without the lock on the hot path)
        self.applied = 0  # how many entries replay has applied
        if path is not None:
            self._open(Path(path))

    # -- the file ---------------------------------------------------------------------------

    def _open(self, base: Path) -> None:
        if not base.parent.is_dir():
            raise ValueError(f"the quota journal's directory {base.parent} does not exist")
        candidates = [base, *(base.with_name(f"{base.name}.{i}")
                              for i in range(1, _SIBLINGS + 1))]
        for candidate in candidates:
            try:
                fd = os.open(candidate, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            except OSError as exc:
                raise ValueError(f"cannot open the quota journal {candidate}: {exc}") from exc
            if _lock(fd):
                self.path, self._fd = candidate, fd
                break
            os.close(fd)
        else:
            raise ValueError(f"the quota journal {base}: {_SIBLINGS + 1} processes hold it")
        self._queue = _read(fd)
        for sibling in candidates:  # left by processes that have exited
            if sibling != self.path and sibling.exists():
                self._adopt(sibling)
        self._rewrite()
        self.pending = len(self._queue)
        if self._queue:
            log.warning("quota journal %s: %d store operations to replay", self.path,
                        len(self._queue))

    def _adopt(self, sibling: Path) -> None:
        try:
            fd = os.open(sibling, os.O_RDWR | os.O_APPEND)
        except OSError:
            return
        try:
            if not _lock(fd):
                return  # a live process's journal
            found = _read(fd)
            if found:
                self._queue.update(found)
                self._write(b"".join(entry.line() for entry in found.values()), sync=True)
            os.ftruncate(fd, 0)  # kept, not removed: a process may be opening it
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write(self, data: bytes, *, sync: bool) -> None:
        if self._fd is None:
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        if sync:
            os.fsync(self._fd)

    def _rewrite(self) -> None:
        """Empty the file when nothing is pending (done markers and applied entries go)."""
        if self._fd is not None and not self._queue:
            os.ftruncate(self._fd, 0)

    # -- the queue --------------------------------------------------------------------------

    def attach(self, store: QuotaStore) -> None:
        """The store to apply entries to; starts retrying if entries are pending."""
        with self._mutex:
            self._store = store
            self._start()

    def add(self, entry: Pending) -> None:
        """Keep ``entry`` (durably, with a path) and try it in the background."""
        with self._mutex:
            if self._closed:
                raise RuntimeError("the quota journal is closed")
            self._write(entry.line(), sync=True)
            self._queue[entry.call] = entry
            self.pending = len(self._queue)
            self._start()

    def wake(self) -> None:
        """Try the pending entries now (the store has just answered)."""
        self._wake.set()

    def entries(self) -> list[Pending]:
        with self._mutex:
            return list(self._queue.values())

    def replay(self, store: QuotaStore | None = None) -> int:
        """Apply pending entries in order until one fails; how many are left. A failed entry
        goes to the back of the queue, so one the store keeps refusing blocks no other."""
        store = store if store is not None else self._store
        if store is None or not self._replaying.acquire(blocking=False):
            return self.pending
        try:
            applied = 0
            for entry in self.entries():
                try:
                    entry.apply(store)
                except Exception as exc:  # the store is still away: later
                    with self._mutex:
                        if self._queue.pop(entry.call, None) is not None:
                            self._queue[entry.call] = entry
                    if not self._failing:
                        log.warning("quota journal: the store still fails (%r); %d operations"
                                    " wait", exc, self.pending)
                    self._failing = True
                    break
                applied += 1
                self.applied += 1
                with self._mutex:
                    if self._queue.pop(entry.call, None) is not None:
                        self._write(json.dumps({"done": entry.call}).encode() + b"\n",
                                    sync=False)
                    self.pending = len(self._queue)
                    if not self._queue:
                        self._rewrite()
            else:
                self._failing = False
            if applied:
                log.info("quota journal: applied %d store operations, %d left", applied,
                         self.pending)
            return self.pending
        finally:
            self._replaying.release()

    def _start(self) -> None:
        """Start the retrying thread if there is work, a store and none runs (lock held)."""
        if (self._background and self._queue and self._store is not None
                and self._worker is None and not self._closed):
            self._worker = threading.Thread(target=self._run, name="quota-journal",
                                            daemon=True)
            self._worker.start()

    def _run(self) -> None:
        """Replay until the queue is empty: at once, then after pauses doubling from the first
        to the longest while nothing gets through. A wake cuts a pause short, but passes stay
        ``_WAKE_GAP_S`` apart (a store that takes calls yet refuses an entry is not hammered
        once per call)."""
        first, longest = self._retry_s
        pause, last = 0.0, 0.0
        while True:
            if self._wake.wait(pause):
                self._wake.clear()
                early = last + _WAKE_GAP_S - time.monotonic()
                if early > 0 and not self._closed:
                    time.sleep(early)
            if self._closed:
                return
            before = self.applied
            self.replay()
            last = time.monotonic()
            with self._mutex:
                if not self._queue or self._closed:
                    self._worker = None
                    return
            pause = first if self.applied > before else min(max(pause * 2, first), longest)

    def close(self) -> None:
        """Stop retrying; with a file, what is pending stays in it for the next start."""
        with self._mutex:
            self._closed = True
            self._wake.set()
            if self._queue and self._fd is None:
                log.error("quota journal closed with %d store operations never applied: %s",
                          len(self._queue), [(e.call, e.actual, [c.key for c in e.charges])
                                             for e in self._queue.values()])
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

