"""Live captions and meeting transcripts, offline (optional: the ``transcription`` extra).

Modules: vad.py (utterances at pauses), engine.py (speech to text),
service.py (the per-room process the engines run in), transcript.py (the
files), room_transcription.py (a room's taps, events and transcript).
"""
