"""SDP as text: what the SFU reads from offers that aiortc's parser drops
(simulcast rids), what it adds to aiortc's answers (simulcast acceptance, a
start-bitrate hint), and the refusal of SDPs that say one thing twice. No
aiortc objects here, but attributes are read the way aiortc reads them."""

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
    """The a=mid of one m-section's lines, unstripped as aiortc keeps it."""
    return next((value for line in lines if (value := _value(line, "mid")) is not None), None)


def attribute(line: str) -> Optional[str]:
    """The name of an a= line's attribute, as aiortc's parser sees it
    (``a=sendonly:x`` is a direction to it)."""
    if not line.startswith("a="):
        return None
    return line[2:].split(":", 1)[0]


def _value(line: str, name: str) -> Optional[str]:
    if attribute(line) != name or ":" not in line:
        return None
    return line.split(":", 1)[1]


def ambiguity(sdp: str) -> Optional[str]:
    """Why ``sdp`` can be read two ways, or None. aiortc keeps the last of
    repeated attributes, a text reader may take the first, and a grant check
    must see what gets built: so a direction, a=mid or a=simulcast appears
    at most once per m-section, every audio/video m-section has a mid of
    its own, and rids are not repeated."""
    mids: set[str] = set()
    for index, lines in enumerate(sections(sdp)[1:]):
        problem = _section_ambiguity(lines)
        mid = mid_of(lines)
        if problem is None and mid is None and lines[0].startswith(("m=audio", "m=video")):
            problem = "has no a=mid"
        if problem is None and mid is not None and mid in mids:
            problem = f"repeats a=mid:{mid} of an earlier one"
        if problem is not None:
            return f"m-section {index} {problem}"
        mids.add(mid)
    return None


def _section_ambiguity(lines: list[str]) -> Optional[str]:
    names = [attribute(line) for line in lines]
    if sum(name in DIRECTIONS for name in names) > 1:
        return "has more than one direction attribute"
    for name in ("mid", "simulcast"):
        if names.count(name) > 1:
            return f"has more than one a={name}"
    rids = [line[6:].split(" ", 1)[0] for line in lines if attribute(line) == "rid"]
    simulcast = next((line for line in lines if attribute(line) == "simulcast"), "")
    listed = [r.lstrip("~") for part in simulcast.split(" ")[1:2] for alt in part.split(";") for r in alt.split(",")]
    if len(set(rids)) != len(rids) or len(set(listed)) != len(listed):
        return "repeats a rid"
    return None
