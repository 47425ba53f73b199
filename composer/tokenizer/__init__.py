"""Notes <-> tokens. Two encodings behind one interface, chosen by ``TokenizerConfig.encoding``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from composer.errors import TokenError
from composer.tokenizer.base import DRUMS, TOKEN_HEADER, EncodeStats, TempoSteering, Tokenizer
from composer.tokenizer.beat import BeatTokenizer
from composer.tokenizer.config import ENCODINGS, TokenizerConfig
from composer.tokenizer.grammar import Grammar, GrammarState
from composer.tokenizer.performance import PerformanceTokenizer
from composer.tokenizer.vocab import TokenRange, Vocabulary

if TYPE_CHECKING:  # pragma: no cover
    from composer.conditions import ConditionSet

__all__ = [
    "DRUMS",
    "ENCODINGS",
    "TOKEN_HEADER",
    "BeatTokenizer",
    "EncodeStats",
    "Grammar",
    "GrammarState",
    "PerformanceTokenizer",
    "TempoSteering",
    "TokenRange",
    "Tokenizer",
    "TOKENIZERS",
    "TokenizerConfig",
    "Vocabulary",
    "tokenizer_for_text",
    "tokenizer_from_config",
]

#: The one place an encoding's name maps to its tokenizer (its keys are ``ENCODINGS``).
TOKENIZERS: dict[str, type[Tokenizer]] = {"beat": BeatTokenizer, "performance": PerformanceTokenizer}


def tokenizer_from_config(config: TokenizerConfig, conditions: ConditionSet | None = None) -> Tokenizer:
    """The tokenizer ``config`` names, with ``conditions``' tokens appended where given."""
    return TOKENIZERS[config.encoding](config, conditions)


def tokenizer_for_text(text: str, encoding: str | None = None) -> Tokenizer:
    """The tokenizer a token file (``Tokenizer.to_text``) was written with, from its header line.

    A file without the header is read with ``encoding``'s default config; without either, TokenError.
    """
    first = text.split("\n", 1)[0]
    if first.startswith(TOKEN_HEADER):
        try:
            data = json.loads(first[len(TOKEN_HEADER) :])
        except json.JSONDecodeError as e:
            raise TokenError(str(e)) from None
        config = TokenizerConfig.from_dict(data)
    elif encoding is not None:
        config = TokenizerConfig(encoding=encoding)
    else:
        raise TokenError("no composer-tokens header line; say which --encoding it uses")
    return tokenizer_from_config(config)
