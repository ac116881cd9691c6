"""Identifiers handed to clients: short, random, prefixed by what they name."""

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(9)}"
