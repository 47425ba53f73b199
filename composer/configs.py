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


def check_range(name: str, value: object, lo: float, hi: float, kind: type | tuple[type, ...] = int) -> None:
    """ConfigError naming the value and the allowed range unless ``lo <= value <= hi`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, kind) or not lo <= value <= hi:  # type: ignore[operator]
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{name} must be {what} in {lo}..{hi}, got {value!r}")
