"""Shared-memory blocks: a bounded pool of reusable blocks in the front, zero-copy mapping in workers.

Only the front process creates and unlinks blocks. A worker maps a block by name for one job and
unmaps it afterwards; it never registers it anywhere, so the front's resource tracker stays the one
owner (and cleans up if the front itself is killed).
"""

from __future__ import annotations

import itertools
import logging
import mmap
import os
import threading
from multiprocessing import shared_memory

log = logging.getLogger("gradserve.server.shm")

PAGE = mmap.PAGESIZE
SMALL_BLOCK = 1 << 20           # every request up to 1 MiB shares one block size, so they all reuse
SHM_DIR = "/dev/shm"


def block_size(nbytes: int) -> int:
    """Round up so that requests of similar size reuse each other's blocks (waste <= 12.5%)."""
    if nbytes <= SMALL_BLOCK:
        return SMALL_BLOCK
    step = max(PAGE, 1 << (nbytes.bit_length() - 4))
    return -(-nbytes // step) * step


class BlockPool:
    """Creates, reuses and unlinks the front's shared-memory blocks.

    Free blocks are cached up to `max_cached_bytes` in total: creating a big block per request costs
    its page faults every time (measured: 271 ms vs 33 ms for 256 MiB).
    """

    def __init__(self, max_cached_bytes: int, prefix: str | None = None) -> None:
        self.max_cached_bytes = max_cached_bytes
        self.prefix = prefix or f"gradserve_{os.getpid()}_{id(self):x}_"
        self._lock = threading.Lock()
        self._free: list[shared_memory.SharedMemory] = []
        self._cached = 0
        self._live: dict[str, shared_memory.SharedMemory] = {}
        self._names = itertools.count()
        self._closed = False

    def acquire(self, nbytes: int) -> shared_memory.SharedMemory:
        want = block_size(nbytes)
        with self._lock:
            if self._closed:
                raise RuntimeError("block pool is closed")
            fits = [b for b in self._free if want <= b.size <= want + want // 4]
            if fits:
                block = min(fits, key=lambda b: b.size)
                self._free.remove(block)
                self._cached -= block.size
                return block
            name = f"{self.prefix}{next(self._names)}"
        block = shared_memory.SharedMemory(name=name, create=True, size=want)
        with self._lock:
            self._live[block.name] = block
        return block

    def release(self, block: shared_memory.SharedMemory) -> None:
        with self._lock:
            if not self._closed and block.size <= self.max_cached_bytes:
                self._free.append(block)
                self._cached += block.size
                evict = []
                while self._cached > self.max_cached_bytes:
                    oldest = self._free.pop(0)
                    self._cached -= oldest.size
                    evict.append(oldest)
            else:
                evict = [block]
            for b in evict:
                self._live.pop(b.name, None)
        for b in evict:
            _destroy(b)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._live)

    def close(self) -> None:
        """Unlink every block, cached or still in use (call when no worker uses them any more)."""
        with self._lock:
            self._closed = True
            blocks = list(self._live.values())
            self._live.clear()
            self._free.clear()
            self._cached = 0
        for b in blocks:
            _destroy(b)


def _destroy(block: shared_memory.SharedMemory) -> None:
    try:
        block.close()
    except BufferError:
        # A numpy view still exports the buffer; the mapping goes when that view does.
        pass
    try:
        block.unlink()
    except FileNotFoundError:
        pass


def open_block(name: str) -> int:
    """Open a block created by the front, read-write; the caller closes the descriptor."""
    return os.open(os.path.join(SHM_DIR, name), os.O_RDWR)


def map_block(fd: int, size: int) -> mmap.mmap:
    """Map an open block read-write, without registering it anywhere.

    NOTE: SharedMemory(name) would register the segment with the resource tracker it shares with
    the front, and the worker's registration and the front's unlink then race on one tracker entry
    (https://github.com/python/cpython/issues/82300; `track=False` only exists from Python 3.13).
    """
    return mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
