"""What every config dataclass shares: loading from a mapping that must not carry unknown keys."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from composer.errors import ConfigError


def known_fields(cls: type, data: Any, what: str) -> dict[str, Any]:
    """``data`` as keyword arguments for dataclass ``cls``; ConfigError naming any unknown key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what} config must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {what} config keys: {', '.join(unknown)}")
    return dict(data)
