"""What a server process holds, read from /proc: its child processes (workers,
recorders) and its UDP sockets."""

from __future__ import annotations

import os
import socket


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent``, by pid."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                children.append(int(entry))
    return sorted(children)


def udp_sockets_of(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every UDP socket process ``pid`` holds (as `ss -uanp`
    shows them), from /proc/<pid>/fd and /proc/net/udp."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[9] in inodes:
                    hex_address, hex_port = fields[1].split(":")
                    address = socket.inet_ntoa(bytes.fromhex(hex_address)[::-1]) if len(hex_address) == 8 else hex_address
                    found.append((address, int(hex_port, 16)))
    return found
