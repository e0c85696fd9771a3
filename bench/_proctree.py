"""A process and everything it started (a sweep driver, Ray's GCS, raylet and workers), read from ``/proc``:
resident memory, open file descriptors and listening TCP sockets. Linux only, no dependency (psutil is not
installed with ``ray[tune,train]``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
LISTEN = "0A"  # the TCP state column of /proc/net/tcp for a listening socket


def _children_of() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # the process ended while we looked
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def tree(root: int) -> list[int]:
    """``root`` and its descendants that are alive now."""
    children, found, stack = _children_of(), [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack += children.get(pid, [])
    return found


def rss_mb(pid: int) -> float:
    try:
        with open(PROC / str(pid) / "status") as handle:
            return next(int(line.split()[1]) / 1024 for line in handle if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0.0


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(PROC / str(pid) / "fd"))
    except OSError:
        return 0


@dataclass(frozen=True)
class TreeSample:
    processes: int
    rss_mb: float
    fds: int


def sample(root: int) -> TreeSample:
    """Resident memory (summed: shared pages count once per process, so an upper bound) and descriptors."""
    pids = tree(root)
    return TreeSample(len(pids), sum(rss_mb(p) for p in pids), sum(open_fds(p) for p in pids))


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.listdir(PROC / str(pid) / "fd"):
            target = os.readlink(PROC / str(pid) / "fd" / fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _address(hex_address: str) -> str:
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        text = ".".join(str(b) for b in reversed(raw))
    else:  # IPv6: four little-endian 32-bit words
        words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
        text = ":".join(b"".join(words)[i:i + 2].hex() for i in range(0, 16, 2))
    return f"{text}:{int(port, 16)}"


def listening_addresses(pids: list[int]) -> dict[str, int]:
    """``address:port`` -> pid for every listening TCP socket (IPv4 and IPv6) these processes hold."""
    owner = {inode: pid for pid in pids for inode in _socket_inodes(pid)}
    found = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == LISTEN and fields[9] in owner:
                found[_address(fields[1])] = owner[fields[9]]
    return found
