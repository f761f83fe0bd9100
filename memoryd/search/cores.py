"""Whether the machine has a core to spare for this daemon right now.

What counts is the CPU time *other* processes took over the last half second or so: the
machine's busy time (Linux's /proc/stat) minus this process's own (``os.times``). Neither
a load average, which still remembered this daemon's own import of a minute ago, nor the
count of tasks running at this instant, which counted the SimSIMD worker thread that a
scan had just left spinning, told a quiet machine from a busy one (docs/performance.md).

Read at most every ``INTERVAL_S`` (~10 us a read, 0.1 us otherwise); between reads the last
answer stands.
Where /proc/stat cannot be read, no core is assumed spare.

The daemon's own heavy work (an import's embedding batches and writes) is not counted
there, so it says so itself (``own_work``): while it runs, no core is spare. During a 10k
real-model import onto 110k memories, a search's two-thread first-pass scan waited for a
core the import's embedding lanes held.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

INTERVAL_S = 0.5
PROC_STAT = Path("/proc/stat")
try:
    TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")  # /proc/stat counts in these ticks
except (AttributeError, ValueError, OSError):
    TICK_S = 0.01


_own_work = 0  # pieces of the daemon's own heavy work under way (event loop only)


@contextlib.contextmanager
def own_work() -> Iterator[None]:
    """Around an await of the daemon's own heavy work (on the event loop, as every
    ``CoreWatch.spare`` is asked): no core is spare meanwhile."""
    global _own_work
    _own_work += 1
    try:
        yield
    finally:
        _own_work -= 1


def _machine_busy_s() -> float | None:
    """Seconds of CPU time all processes used since boot (every core), or None."""
    try:
        with PROC_STAT.open("rb") as stat:
            fields = stat.readline().split()
        # cpu user nice system idle iowait irq softirq steal ...: all but idle and iowait.
        # Steal counts as busy: the host gave our cores to someone else.
        ticks = [int(f) for f in fields[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) * TICK_S
    except (OSError, ValueError, IndexError):
        return None


def _own_busy_s() -> float:
    times = os.times()
    return times.user + times.system


class CoreWatch:
    """``spare()``: whether other processes left at least ``needed`` cores idle lately."""

    def __init__(self, needed: float = 1.5) -> None:
        self.needed = needed
        self._cores = os.cpu_count() or 1
        self._sampled_at: float | None = None
        self._machine = 0.0
        self._own = 0.0
        self._spare = False

    def spare(self) -> bool:
        if _own_work:
            return False
        now = time.monotonic()
        if self._sampled_at is not None and now - self._sampled_at < INTERVAL_S:
            return self._spare
        machine = _machine_busy_s()
        if machine is None:
            self._spare = False
            return False
        own = _own_busy_s()
        if self._sampled_at is not None:
            others = (machine - self._machine) - (own - self._own)
            self._spare = self._cores - others / (now - self._sampled_at) >= self.needed
        self._sampled_at, self._machine, self._own = now, machine, own
        return self._spare
