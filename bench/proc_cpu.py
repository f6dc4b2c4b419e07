"""CPU time of process trees from /proc (Linux), for per-run CPU accounting in the benches.

A tree's CPU is the sum, over the root and every live descendant, of utime + stime + cutime +
cstime. `cutime`/`cstime` hold the CPU of children that exited and were reaped, so a process
that dies between two samples (a Postgres backend whose connection closed) moves its time
into its parent's counters and is neither lost nor counted twice; a live child's own time is
not in its parent's `cutime`. The difference of two samples is the CPU the tree used between
them. Resolution is one clock tick (10 ms at the usual USER_HZ of 100).
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None if it is gone."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is parenthesised and may hold spaces or parentheses
    return raw.rpartition(")")[2].split()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or len(fields) < 2:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def tree_pids(root: int) -> list[int]:
    """`root` and its live descendants."""
    children = _children_map()
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def process_cpu_s(pid: int, *, with_children: bool = True) -> float:
    """utime + stime (+ cutime + cstime) of one process in seconds; 0 if it is gone."""
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 15:
        return 0.0
    # after the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17)
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICKS


def tree_cpu_s(root: int) -> float:
    """CPU seconds used so far by `root` and its descendants (see the module docstring)."""
    return sum(process_cpu_s(pid) for pid in tree_pids(root))


def self_cpu_s() -> float:
    """CPU seconds of this process (every thread), without its child processes."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def parent_pid(pid: int) -> int | None:
    """The parent of `pid`, or None if it is gone."""
    fields = _stat_fields(pid)
    return int(fields[1]) if fields is not None and len(fields) > 1 else None
