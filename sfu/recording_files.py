"""Finished recordings on disk: found, listed, deleted and expired by room.

Each finished recording has a sidecar ``<file>.json`` (0600, like the file)
saying what it is: its id, room, kind, start and end (Unix seconds),
duration, total size and its ``files`` (a "tracks" recording has one more
file per track published after its start). The sidecars make a recording findable after its room is
gone, without a database. Retention (``recording_retention_days``) deletes
files whose recording ended longer ago than that; it is applied when a
recording finishes, when recordings are listed, and when the server starts.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

SIDECAR = ".json"


def write_sidecar(path: Path, info: dict) -> None:
    """Describe a finished recording file (never through a link left there)."""
    sidecar = path.with_name(path.name + SIDECAR)
    descriptor = os.open(sidecar, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump({**info, "file": path.name}, out)


def finished(directory: str | os.PathLike) -> list[dict]:
    """Every finished recording described in ``directory``, oldest first."""
    out = []
    root = Path(directory)
    if not root.is_dir():
        return out
    for sidecar in root.glob("*" + SIDECAR):
        try:
            info = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and (root / str(info.get("file", ""))).is_file():
            out.append(info)
    return sorted(out, key=lambda info: info.get("started_at", 0))


def of_room(directory: str | os.PathLike, room: str) -> list[dict]:
    return [info for info in finished(directory) if info.get("room") == room]


def find(directory: str | os.PathLike, room: str, recording_id: str) -> Optional[tuple[dict, Path]]:
    """The room's finished recording ``recording_id`` and its file, if any."""
    for info in of_room(directory, room):
        if info.get("id") == recording_id:
            return info, Path(directory) / info["file"]
    return None


def delete(directory: str | os.PathLike, info: dict) -> None:
    """The recording's files (all of them) and its sidecar."""
    path = Path(directory) / info["file"]
    files = [Path(directory) / Path(name).name for name in info.get("files") or [info["file"]]]
    for victim in (*files, path.with_name(path.name + SIDECAR)):
        try:
            victim.unlink()
        except FileNotFoundError:
            pass


def expire(directory: str | os.PathLike, retention_days: float, now: Optional[float] = None) -> list[str]:
    """Delete recordings that ended more than ``retention_days`` ago (0: keep
    all); returns the ids deleted."""
    if retention_days <= 0:
        return []
    limit = (now if now is not None else time.time()) - retention_days * 86400
    gone = []
    for info in finished(directory):
        if info.get("finished_at", 0) < limit:
            delete(directory, info)
            gone.append(str(info.get("id")))
            log.info("recording %s of %s deleted: older than %s days", info.get("id"), info.get("room"), retention_days)
    return gone
