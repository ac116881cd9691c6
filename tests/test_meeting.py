"""Meeting features (issue 8): screen share, chat, reactions, raise hand.

Chat, reactions and hands go over signaling to everyone in the room; late
joiners get the last 100 chat messages; all need the canPublishData grant.
Screen share is a second, non-simulcast video source per participant that
the demo page shows large beside the grid.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from signaling.auth import VideoGrant, create_token
from signaling.client import ClientError

from .conftest import API_KEY, API_SECRET, KEYS
from .waiting import eventually

ROOM = "meeting"


def _events(client, kind: str) -> list[dict]:
    return [e for e in client.events if e["type"] == kind]


# --- chat, reactions, raise hand over signaling (Python client) -----------------


async def test_late_joiner_gets_the_last_100_chat_messages(make_server):
    # a burst above the default (100) so that the test need not pace itself
    server = await make_server(limits={"message_burst": 300})
    async with server.client() as talker, server.client() as listener, server.client() as late:
        await talker.join(ROOM, "talker")
        await listener.join(ROOM, "listener")
        await _chat_and_join_late(talker, listener, late)


async def _chat_and_join_late(talker, listener, late):
    for n in range(105):
        await talker.request({"type": "chat", "text": f"message {n}"})
    # everyone in the room saw all of them, the sender too, in order
    await eventually(lambda: len(_events(listener, "chat_message")) == 105)
    seen = _events(listener, "chat_message")
    assert [m["text"] for m in seen] == [f"message {n}" for n in range(105)]
    assert {m["participant_id"] for m in seen} == {talker.participant_id}
    assert {m["name"] for m in seen} == {"talker"}
    assert len({m["id"] for m in seen}) == 105
    assert abs(seen[-1]["ts"] / 1000 - time.time()) < 30
    await eventually(lambda: len(_events(talker, "chat_message")) == 105)

    joined = await late.join(ROOM, "late")
    history = joined["chat_history"]
    assert [m["text"] for m in history] == [f"message {n}" for n in range(5, 105)]
    assert history == [{k: v for k, v in m.items() if k != "type"} for m in seen[5:]]


async def test_chat_text_is_kept_verbatim_and_checked(clients):
    sender = await clients()
    await sender.join(ROOM, "sender")
    raw = "<img src=x onerror=alert(1)><b>bold</b> & \"quotes\" ✓"
    await sender.request({"type": "chat", "text": raw})
    message = await eventually(lambda: _events(sender, "chat_message"))
    assert message[0]["text"] == raw
    for bad in ["", "   ", "x" * 2001]:
        with pytest.raises(ClientError) as caught:
            await sender.request({"type": "chat", "text": bad})
        assert caught.value.code == "bad_message"
    await sender.request({"type": "chat", "text": "y" * 2000})  # the limit itself is fine


async def test_raise_hand_and_reaction_reach_everyone(clients):
    alice = await clients()
    await alice.join(ROOM, "alice")
    bob = await clients()
    await bob.join(ROOM, "bob")
    await alice.request({"type": "raise_hand", "raised": True})
    raised = await eventually(lambda: _events(bob, "hand_raised"))
    assert raised == [{"type": "hand_raised", "participant_id": alice.participant_id, "raised": True}]
    assert _events(alice, "hand_raised") == raised  # the sender sees it too

    late = await clients()  # hands are part of ParticipantInfo
    joined = await late.join(ROOM, "late")
    hands = {p["name"]: p["hand_raised"] for p in joined["participants"]}
    assert hands == {"alice": True, "bob": False}

    await alice.request({"type": "raise_hand", "raised": False})
    await eventually(lambda: len(_events(late, "hand_raised")) == 1)
    assert _events(late, "hand_raised")[0]["raised"] is False

    await bob.request({"type": "reaction", "emoji": "🎉"})
    reaction = (await eventually(lambda: _events(alice, "reaction")))[0]
    assert (reaction["participant_id"], reaction["emoji"]) == (bob.participant_id, "🎉")
    with pytest.raises(ClientError) as caught:
        await bob.request({"type": "reaction", "emoji": "x" * 33})
    assert caught.value.code == "bad_message"


@pytest.fixture
async def keyed_clients(make_server):
    keyed = await make_server(keys=KEYS)
    made = []

    async def make(identity: str, **grant):
        client = keyed.client()
        await client.connect()
        made.append(client)
        token = create_token(API_KEY, API_SECRET, identity, VideoGrant(room=ROOM, roomJoin=True, **grant))
        await client.join(ROOM, token=token)
        return client

    yield make
    for client in made:
        await client.close()


async def test_chat_reactions_and_hands_need_can_publish_data(keyed_clients):
    host = await keyed_clients("host")
    mute = await keyed_clients("mute", canPublishData=False)
    for request in [
        {"type": "chat", "text": "hello"},
        {"type": "reaction", "emoji": "👍"},
        {"type": "raise_hand", "raised": True},
    ]:
        with pytest.raises(ClientError) as caught:
            await mute.request(request)
        assert caught.value.code == "permission_denied", request
        assert "canPublishData" in str(caught.value)
    await host.request({"type": "chat", "text": "allowed"})
    await eventually(lambda: _events(mute, "chat_message"))  # it can still read the chat
    await asyncio.sleep(0.2)
    assert [m["text"] for m in _events(host, "chat_message")] == ["allowed"]
    assert not _events(host, "reaction") and not _events(host, "hand_raised")
    late = await keyed_clients("late")
    # nothing of the refused requests was kept
    assert late.roster and all(not p["hand_raised"] for p in late.roster.values())


# --- in the browser: the demo page (headless Chromium) ----------------------------

SHARE_CANVAS_JS = """
async () => {
  // a 1920x1080 "screen" full of small text, redrawn at 15 fps
  const canvas = document.createElement("canvas");
  canvas.width = 1920;
  canvas.height = 1080;
  const ctx = canvas.getContext("2d");
  let frame = 0;
  const draw = () => {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, 1920, 1080);
    ctx.fillStyle = "#000";
    ctx.font = "24px monospace";
    for (let y = 30; y < 1080; y += 30) ctx.fillText(`line ${y}: frame ${frame} - text must stay sharp`, 20 + (frame % 20), y);
    frame += 1;
  };
  draw();
  window.shareTimer = setInterval(draw, 66);
  const infos = await window.pysfuDemo.shareScreen(canvas.captureStream(15));
  return infos.map((info) => ({id: info.id, source: info.source}));
}
"""

STAGE_JS = """
async () => {
  const shares = Array.from(document.querySelectorAll("#stage .share")).map((share) => ({
    participantId: share.dataset.participantId,
    trackId: share.dataset.trackId,
    videoWidth: share.querySelector("video").videoWidth,
    label: share.querySelector(".share-label").textContent,
  }));
  const inbound = [];
  const pc = window.pysfuDemo.client.subscriberPc;
  if (pc) (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") inbound.push({
      frameWidth: s.frameWidth || 0, framesDecoded: s.framesDecoded || 0,
    });
  });
  return {shares, inbound, stageHidden: document.getElementById("stage").hidden};
}
"""

#: Keeps every `track` event's detail in window.trackDetails.
RECORD_TRACKS_JS = """
() => {
  window.trackDetails = [];
  window.pysfuDemo.client.on("track", (detail) => window.trackDetails.push(detail));
}
"""

#: A `track` detail and its client.remoteTracks record: their keys, and what the old names read.
TRACK_NAMES_JS = """
(trackId) => {
  const detail = window.trackDetails.find((d) => d.track_id === trackId);
  const remote = window.pysfuDemo.client.remoteTrackById(trackId);
  return {
    detail: Object.keys(detail).sort(),
    remote: Object.keys(remote).sort(),
    participant_id: detail.participant_id,
    source: detail.track_info.source,
    aliases: [detail.trackId === trackId, detail.participantId === detail.participant_id,
              detail.trackInfo === detail.track_info, remote.trackId === trackId],
  };
}
"""


async def _open(browser, server, name: str):
    page = await browser.new_page()
    await page.goto(f"{server.http}/?room={ROOM}&name={name}&autojoin=1&audio=0&video=0")
    await page.wait_for_selector("body[data-state=joined]", timeout=15000)
    return page, await page.evaluate("window.pysfuDemo.client.participantId")


async def _until(fetch, check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await fetch()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s: {value}"
        await asyncio.sleep(0.2)


@pytest.mark.browser
async def test_screen_share_arrives_sharp_and_stops(server_process, tmp_path):
    from .browser import chromium, save_artifact

    async with chromium(tmp_path) as browser:
        presenter, presenter_id = await _open(browser, server_process, "ana")
        viewer, _ = await _open(browser, server_process, "ben")
        await viewer.evaluate(RECORD_TRACKS_JS)
        published = await presenter.evaluate(SHARE_CANVAS_JS)
        assert [p["source"] for p in published] == ["screen_share"]
        assert await presenter.locator("#share-btn").text_content() == "Stop sharing"

        # the viewer shows it large on the stage and decodes it at >= 1280 px wide
        state = await _until(
            lambda: viewer.evaluate(STAGE_JS),
            lambda s: s["shares"] and s["shares"][0]["videoWidth"] >= 1280
            and any(i["frameWidth"] >= 1280 for i in s["inbound"]),
            timeout=15, what="a sharp screen share",
        )
        share = state["shares"][0]
        assert (share["participantId"], share["trackId"], share["label"]) == (presenter_id, published[0]["id"], "ana's screen")
        # the client's `track` detail is in the wire's snake_case; the old camelCase names still read
        names = await viewer.evaluate(TRACK_NAMES_JS, published[0]["id"])
        assert names["detail"] == ["kind", "mid", "participant_id", "streams", "track", "track_id", "track_info"]
        assert names["remote"] == ["kind", "mid", "participant_id", "track", "track_id", "track_info"]
        assert (names["participant_id"], names["source"]) == (presenter_id, "screen_share")
        assert names["aliases"] == [True, True, True, True]
        decoded = max(i["framesDecoded"] for i in state["inbound"])
        await asyncio.sleep(1.5)
        later = await viewer.evaluate(STAGE_JS)
        sharp = [i for i in later["inbound"] if i["frameWidth"] >= 1280]
        assert sharp and sharp[0]["framesDecoded"] >= decoded + 10, (state, later)  # still moving (~15 fps)
        # the share is not squeezed into the presenter's grid tile
        tile_video = await viewer.evaluate(
            "(id) => document.querySelector(`.tile[data-participant-id='${id}'] video`).videoWidth", presenter_id)
        assert tile_video == 0
        await viewer.screenshot(path=str(save_artifact("screen-share-viewer.png")))

        await presenter.click("#share-btn")  # stop sharing
        await _until(lambda: viewer.evaluate(STAGE_JS), lambda s: not s["shares"] and s["stageHidden"],
                     timeout=10, what="the share gone")
        assert await presenter.locator("#share-btn").text_content() == "Share screen"
        assert await presenter.evaluate("window.pysfuDemo.client.localTracks.size") == 0


CHAT_VIEW_JS = """
(senderId) => ({
  texts: Array.from(document.querySelectorAll("#chat-messages .chat-text")).map((n) => n.textContent),
  names: Array.from(document.querySelectorAll("#chat-messages .chat-name")).map((n) => n.textContent),
  injected: document.querySelectorAll("#chat-messages img, #chat-messages b, #chat-messages script").length,
  reactions: Array.from(document.querySelectorAll(
    `.tile[data-participant-id="${senderId}"] .reaction-float`)).map((n) => n.textContent),
  hand: !document.querySelector(`.tile[data-participant-id="${senderId}"] .tile-indicator[data-kind=hand]`).hidden,
})
"""

#: A roster Participant and its participants() copy: their keys, and what the old names read.
PARTICIPANT_NAMES_JS = """
(id) => {
  const client = window.pysfuDemo.client;
  const who = client.roster.get(id);
  const plain = client.participants().find((p) => p.id === id);
  return {
    keys: Object.keys(who).sort(),
    json: Object.keys(JSON.parse(JSON.stringify(plain))).sort(),
    hand_raised: who.hand_raised,
    aliases: [who.handRaised, who.quality === who.connection_quality, plain.handRaised],
  };
}
"""


@pytest.mark.browser
async def test_chat_reactions_and_hands_show_on_the_other_page(server_process, tmp_path):
    from .browser import chromium, save_artifact

    raw = "<img src=x onerror=alert(1)><b>bold</b>"
    async with chromium(tmp_path) as browser:
        sender, sender_id = await _open(browser, server_process, "ana")
        reader, _ = await _open(browser, server_process, "ben")
        dialogs = []
        for page in (sender, reader):
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), asyncio.ensure_future(dialog.dismiss())))

        await sender.fill("#chat-input", "hello ben")
        await sender.click("#chat-send")
        await sender.fill("#chat-input", raw)
        await sender.press("#chat-input", "Enter")
        await sender.click("#reactions button[data-emoji='🎉']")
        await sender.click("#hand-btn")

        view = await _until(
            lambda: reader.evaluate(CHAT_VIEW_JS, sender_id),
            lambda v: len(v["texts"]) == 2 and v["reactions"] and v["hand"],
            timeout=5, what="chat, reaction and hand on the reader's page",
        )
        assert view["texts"] == ["hello ben", raw]  # the HTML shows as literal text
        assert view["names"] == ["ana", "ana"]
        assert view["injected"] == 0
        assert view["reactions"] == ["🎉"]
        # the reader's roster record of ana: snake_case like the wire, the old names still read
        names = await reader.evaluate(PARTICIPANT_NAMES_JS, sender_id)
        fields = ["connection_quality", "hand_raised", "id", "name", "state", "tracks"]
        assert (names["keys"], names["json"], names["hand_raised"]) == (fields, fields, True)
        assert names["aliases"] == [True, True, True]
        await reader.screenshot(path=str(save_artifact("chat-reader.png")))
        own = await sender.evaluate(CHAT_VIEW_JS, sender_id)  # the sender sees its own messages too
        assert own["texts"] == ["hello ben", raw] and own["names"] == ["ana (you)", "ana (you)"]
        assert await sender.input_value("#chat-input") == ""

        await sender.click("#hand-btn")  # lower it again
        await _until(lambda: reader.evaluate(CHAT_VIEW_JS, sender_id), lambda v: not v["hand"],
                     timeout=5, what="the hand lowered")
        await asyncio.sleep(3.2)  # reactions fade away
        assert (await reader.evaluate(CHAT_VIEW_JS, sender_id))["reactions"] == []

        late, _ = await _open(browser, server_process, "cleo")  # a late joiner gets the history
        assert (await late.evaluate(CHAT_VIEW_JS, sender_id))["texts"] == ["hello ben", raw]
        assert dialogs == []
