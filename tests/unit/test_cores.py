"""CoreWatch: a core is spare when other processes left it idle lately, whatever this
process did itself."""

from __future__ import annotations

from memoryd.search import cores


class Clock:
    def __init__(self, machine, tmp_path, monkeypatch) -> None:
        self.now, self.own = 100.0, 0.0
        self.stat = tmp_path / "stat"
        self.busy_ticks = 0
        monkeypatch.setattr(cores, "PROC_STAT", self.stat)
        monkeypatch.setattr(cores, "TICK_S", 0.01)
        monkeypatch.setattr(cores.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(cores, "_own_busy_s", lambda: self.own)
        monkeypatch.setattr(cores.os, "cpu_count", lambda: machine)
        self.write()

    def write(self) -> None:
        # cpu user nice system idle iowait irq softirq steal guest guest_nice
        user = self.busy_ticks - 30
        self.stat.write_text(f"cpu  {user} 0 20 99999 500 0 5 5 0 0\ncpu0 ...\n")

    def advance(self, seconds: float, others: float, own: float) -> None:
        """``seconds`` pass; other processes use ``others`` cores, this one ``own``."""
        self.now += seconds
        self.own += own * seconds
        self.busy_ticks += round((others + own) * seconds * 100)
        self.write()


def test_a_core_is_spare_when_other_processes_leave_it_idle(tmp_path, monkeypatch):
    clock = Clock(2, tmp_path, monkeypatch)
    watch = cores.CoreWatch()
    assert not watch.spare()  # nothing measured yet
    clock.advance(1.0, others=0.2, own=1.8)  # this process busy on both cores: still spare
    assert watch.spare()
    clock.advance(0.1, others=2.0, own=0.0)
    assert watch.spare()  # within the interval: the last answer stands
    clock.advance(0.5, others=1.0, own=0.5)  # another process on a core
    assert not watch.spare()
    clock.advance(30.0, others=0.3, own=0.0)  # a long quiet spell
    assert watch.spare()


def test_no_core_is_spare_without_a_proc_stat(tmp_path, monkeypatch):
    clock = Clock(8, tmp_path, monkeypatch)
    watch = cores.CoreWatch()
    watch.spare()
    clock.advance(1.0, others=0.0, own=0.0)
    assert watch.spare()
    clock.advance(1.0, others=0.0, own=0.0)
    clock.stat.unlink()
    assert not watch.spare()
    clock.advance(1.0, others=0.0, own=0.0)
    clock.stat.write_text("garbled\n")
    assert not watch.spare()


def test_one_core_is_never_spare(tmp_path, monkeypatch):
    clock = Clock(1, tmp_path, monkeypatch)
    watch = cores.CoreWatch()
    watch.spare()
    clock.advance(1.0, others=0.0, own=0.0)
    assert not watch.spare()


def test_no_core_is_spare_while_the_daemon_does_its_own_heavy_work(tmp_path, monkeypatch):
    """The daemon's own import (embedding, writes) is not another process's CPU time,
    so it says so: meanwhile a scan takes one thread."""
    clock = Clock(2, tmp_path, monkeypatch)
    watch = cores.CoreWatch()
    watch.spare()
    clock.advance(1.0, others=0.0, own=1.9)
    assert watch.spare()
    with cores.own_work():
        with cores.own_work():
            assert not watch.spare()
        assert not watch.spare()
    assert watch.spare()
