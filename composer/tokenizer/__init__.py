"""Notes <-> tokens. Two encodings behind one interface, chosen by ``TokenizerConfig.encoding``."""

from __future__ import annotations

from composer.tokenizer.base import DRUMS, EncodeStats, Tokenizer
from composer.tokenizer.beat import BeatTokenizer
from composer.tokenizer.config import ENCODINGS, TokenizerConfig
from composer.tokenizer.performance import PerformanceTokenizer
from composer.tokenizer.vocab import TokenRange, Vocabulary

__all__ = [
    "DRUMS",
    "ENCODINGS",
    "BeatTokenizer",
    "EncodeStats",
    "PerformanceTokenizer",
    "TokenRange",
    "Tokenizer",
    "TokenizerConfig",
    "Vocabulary",
    "tokenizer_from_config",
]


def tokenizer_from_config(config: TokenizerConfig) -> Tokenizer:
    if config.encoding == "beat":
        return BeatTokenizer(config)
    return PerformanceTokenizer(config)
