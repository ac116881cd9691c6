"""SDP as text: what the SFU reads from offers that aiortc's parser drops
(simulcast rids), and what it adds to aiortc's answers (simulcast
acceptance, a start-bitrate hint). No aiortc objects here."""

from __future__ import annotations

from typing import Optional

DIRECTIONS = ("sendonly", "sendrecv", "recvonly", "inactive")


def sections(sdp: str) -> list[list[str]]:
    """SDP lines grouped by m-section (the session part first)."""
    groups: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            groups.append([])
        if line:
            groups[-1].append(line)
    return groups


def offered_rids(offer_sdp: str) -> dict[str, list[str]]:
    """mid -> rids of each m-section the offer sends as simulcast."""
    found = {}
    for lines in sections(offer_sdp)[1:]:
        mid = mid_of(lines)
        simulcast = next((line for line in lines if line.startswith("a=simulcast:send ")), None)
        if mid is None or simulcast is None:
            continue
        rids = [r.lstrip("~") for alt in simulcast.split(" ", 1)[1].split(";") for r in alt.split(",")[:1]]
        found[mid] = [r for r in rids if r and not r.startswith("~")]
    return found


def answer_extras(answer_sdp: str, rids: dict[str, list[str]], start_bitrate_kbps: int) -> str:
    """Add what aiortc cannot say: simulcast acceptance and a start bitrate."""
    groups = sections(answer_sdp)
    for lines in groups[1:]:
        mid = mid_of(lines)
        if mid in rids:
            lines += [f"a=rid:{rid} recv" for rid in rids[mid]]
            lines.append("a=simulcast:recv " + ";".join(rids[mid]))
        if start_bitrate_kbps and lines[0].startswith("m=video") and not lines[0].startswith("m=video 0"):
            _add_start_bitrate(lines, start_bitrate_kbps)
    return "\r\n".join(line for lines in groups for line in lines) + "\r\n"


def _add_start_bitrate(lines: list[str], kbps: int) -> None:
    payload_types = lines[0].split()[3:]
    rtx = {line.split()[0][9:] for line in lines if line.startswith("a=rtpmap:") and " rtx/" in line}
    hint = f"x-google-start-bitrate={kbps}"
    for pt in payload_types:
        if pt in rtx:
            continue
        index = next((i for i, line in enumerate(lines) if line.startswith(f"a=fmtp:{pt} ")), None)
        if index is None:
            lines.append(f"a=fmtp:{pt} {hint}")
        else:
            lines[index] += f";{hint}"


def mid_of(lines: list[str]) -> Optional[str]:
    """The a=mid of one m-section's lines."""
    return next((line[6:].strip() for line in lines if line.startswith("a=mid:")), None)


def direction_of(lines: list[str]) -> str:
    """The direction attribute of one m-section's lines (sendrecv if absent)."""
    return next((line[2:].strip() for line in lines if line[2:].strip() in DIRECTIONS), "sendrecv")
