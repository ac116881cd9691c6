"""A room's meeting features (issue 8): chat, reactions, raised hands.

Everyone in the room gets these, the sender too (its UI shows what the
room saw); the signaling layer checks the canPublishData grant first.
The last CHAT_HISTORY chat messages are kept for late joiners
(``join_response.chat_history``); a raised hand is part of the member's
roster entry (``hand_raised``); reactions are announced, not kept.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from . import events
from .ids import new_id
from .member import Member

#: Chat messages a room keeps for late joiners.
CHAT_HISTORY = 100


class Meeting:
    def __init__(self, broadcast: Callable[[events.Event], None]) -> None:
        self._broadcast = broadcast
        #: The last chat messages, oldest first.
        self.chat_history: deque[dict] = deque(maxlen=CHAT_HISTORY)

    def chat(self, sender: Member, text: str) -> dict:
        """Post a chat message; kept in ``chat_history``."""
        message = {
            "id": new_id("CM"), "participant_id": sender.id, "name": sender.name,
            "text": text, "ts": int(time.time() * 1000),
        }
        self.chat_history.append(message)
        self._broadcast(events.ChatMessage(**message))
        return message

    def react(self, sender: Member, emoji: str) -> None:
        self._broadcast(events.Reaction(sender.id, emoji, int(time.time() * 1000)))

    def raise_hand(self, sender: Member, raised: bool) -> None:
        """Raise or lower a hand."""
        if sender.hand_raised == raised:
            return
        sender.hand_raised = raised
        self._broadcast(events.HandRaised(sender.id, raised))
