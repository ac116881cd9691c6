"""Server settings: one validated model, filled from `pysfu serve` flags."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from sfu.config import SfuConfig

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


class ServerConfig(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=7880, ge=0, le=65535)
    log_level: str = "info"
    static_dir: Path = STATIC_DIR
    sfu: SfuConfig = Field(default_factory=SfuConfig)
