"""The small family of domain errors. The CLI turns each into one line on stderr."""

from __future__ import annotations


class ComposerError(Exception):
    """Base class for every failure a user can cause or fix."""


class MidiReadError(ComposerError):
    """A file is not a usable Standard MIDI File (not MIDI, truncated, absurd header, no notes)."""


class ConfigError(ComposerError, ValueError):
    """A configuration value is out of range or a config file is malformed."""


class TokenError(ComposerError, ValueError):
    """A token or token id is not in the vocabulary, or a token file is malformed."""


class CorpusError(ComposerError):
    """A corpus folder is missing, incomplete, or incompatible."""


class CheckpointError(ComposerError):
    """A checkpoint is missing, truncated, unsafe or incompatible."""
