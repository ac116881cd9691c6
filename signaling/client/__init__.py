"""A Python client for pysfu (aiortc-based): for bots, tools and tests.

    async with Client("ws://127.0.0.1:7880/ws") as client:
        await client.join("room", "bot")
        await client.publish([audio_track, video_track])
        remotes = await client.wait_tracks(2)  # RemoteTracks
        frame = await remotes[0].track.recv()

client.py holds the Client, tracks.py what it receives (RemoteTrack).
"""

from .client import Client, ClientError
from .tracks import RemoteTrack

__all__ = ["Client", "ClientError", "RemoteTrack"]
