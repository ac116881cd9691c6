"""Server settings: one validated model, filled from `pysfu serve` flags."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel, Field

from sfu.config import SfuConfig


def _static_dir() -> Path:
    """static/ of a source checkout, else the copy a wheel installs."""
    source = Path(__file__).resolve().parent.parent / "static"
    installed = Path(sys.prefix) / "share" / "pysfu" / "static"
    return source if source.is_dir() else installed


STATIC_DIR = _static_dir()


class ServerConfig(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=7880, ge=0, le=65535)
    log_level: str = "info"
    static_dir: Path = STATIC_DIR
    sfu: SfuConfig = Field(default_factory=SfuConfig)
