"""The STUN/TURN servers each client gets in its join_response.

TURN credentials are minted per participant with the TURN REST API scheme
that coturn implements (``use-auth-secret`` + ``static-auth-secret``): the
username is ``"<expiry unix time>:<identity>"`` and the credential is
base64(HMAC-SHA1(secret, username)).  The TURN server recomputes the HMAC
and refuses the username once its time has passed, so a credential leaked
from a page stops working after ``turn_ttl`` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Optional

from .config import IceServers
from .protocol import IceServerInfo


def turn_credentials(secret: str, identity: str, ttl: int, now: Optional[float] = None) -> tuple[str, str]:
    """(username, credential) valid for ``ttl`` seconds from ``now``."""
    expiry = int(time.time() if now is None else now) + ttl
    username = f"{expiry}:{identity}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers_for(settings: IceServers, identity: str) -> list[IceServerInfo]:
    """STUN first, then TURN with fresh credentials, then the external servers."""
    servers = []
    if settings.stun_urls:
        servers.append(IceServerInfo(urls=settings.stun_urls))
    if settings.turn_urls:
        username, credential = turn_credentials(settings.turn_secret, identity, settings.turn_ttl)
        servers.append(IceServerInfo(urls=settings.turn_urls, username=username, credential=credential))
    for server in settings.external:
        servers.append(IceServerInfo(urls=server.urls, username=server.username or None,
                                     credential=server.credential or None))
    return servers
