"""Tokenizer configuration: a small frozen dataclass, validated on construction, stored as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from composer.configs import check_range, known_fields
from composer.errors import ConfigError

ENCODINGS = ("beat", "performance")
FORMAT_VERSION = 1


@dataclass(frozen=True)
class TokenizerConfig:
    """How MIDI becomes tokens. Chosen when a corpus is built and stored with it (``tokenizer.json``)."""

    encoding: str = "beat"
    pitch_min: int = 0
    pitch_max: int = 127
    velocity_bins: int = 32
    # --- beat encoding: musical time on a grid
    #: Grid positions per quarter note. 12 holds 16ths (3 steps) and 8th/16th triplets (4 and 2 steps).
    beat_resolution: int = 12
    #: Longest bar, in quarter notes; a longer time signature is replaced by 4/4 (and reported).
    max_bar_quarters: int = 8
    #: Longest single DURATION token, in quarter notes; longer notes chain several DURATION tokens.
    max_duration_quarters: int = 8
    #: Tempo grid: geometric, anchored at 120 bpm (so 60, 120 and 240 are exact), this many steps per octave.
    tempo_steps_per_octave: int = 16
    tempo_min: float = 24.0
    tempo_max: float = 320.0
    # --- performance encoding: absolute time in milliseconds
    time_shift_ms: int = 10
    max_shift_ms: int = 1000

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.encoding!r}")
        check_range("pitch_min", self.pitch_min, 0, 127)
        check_range("pitch_max", self.pitch_max, self.pitch_min, 127)
        check_range("velocity_bins", self.velocity_bins, 1, 127)
        check_range("beat_resolution", self.beat_resolution, 1, 96)
        check_range("max_bar_quarters", self.max_bar_quarters, 1, 64)
        check_range("max_duration_quarters", self.max_duration_quarters, 1, 64)
        check_range("tempo_steps_per_octave", self.tempo_steps_per_octave, 1, 96)
        check_range("tempo_min", self.tempo_min, 1.0, 1000.0, (int, float))
        check_range("tempo_max", self.tempo_max, self.tempo_min, 1000.0, (int, float))
        check_range("time_shift_ms", self.time_shift_ms, 1, 1000)
        check_range("max_shift_ms", self.max_shift_ms, self.time_shift_ms, 10_000)
        if self.max_shift_ms % self.time_shift_ms:
            raise ConfigError(
                f"max_shift_ms must be a multiple of time_shift_ms ({self.time_shift_ms}), "
                f"got {self.max_shift_ms}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerConfig:
        data = dict(data) if isinstance(data, dict) else data
        version = data.pop("format_version", FORMAT_VERSION) if isinstance(data, dict) else FORMAT_VERSION
        if version != FORMAT_VERSION:
            raise ConfigError(f"tokenizer config format_version must be {FORMAT_VERSION}, got {version!r}")
        return cls(**known_fields(cls, data, "tokenizer"))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config as JSON, atomically."""
        from composer.fsutil import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TokenizerConfig:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as e:
            raise ConfigError(f"{path}: cannot read tokenizer config: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
