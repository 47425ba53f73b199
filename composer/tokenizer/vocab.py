"""A vocabulary derived from ordered ``(kind, min, max)`` ranges, never typed out by hand.

Each range occupies a contiguous block of ids in declaration order; ``encode_event`` and ``decode_event``
map between ``(kind, value)`` and ids by offset, and the size is computed. New kinds (conditioning tokens,
say) are appended at the end so that existing ids never move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from composer.errors import TokenError

#: The special tokens every vocabulary starts with (ids 0, 1, 2).
PAD, BOS, EOS = "PAD", "BOS", "EOS"


@dataclass(frozen=True)
class TokenRange:
    kind: str
    min: int
    max: int
    #: Optional display label per value (``TIME_SIGNATURE_3/4``, ``TEMPO_120``); numbers otherwise.
    labels: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.max < self.min:
            raise TokenError(f"token range {self.kind} is empty: {self.min}..{self.max}")
        if self.labels is not None and len(self.labels) != self.size:
            raise TokenError(f"token range {self.kind} has {len(self.labels)} labels for {self.size} values")

    @property
    def size(self) -> int:
        return self.max - self.min + 1

    def token(self, value: int) -> str:
        if self.size == 1 and self.labels is None:
            return self.kind
        label = self.labels[value - self.min] if self.labels is not None else str(value)
        return f"{self.kind}_{label}"


#: PAD, BOS and EOS come first in every vocabulary.
SPECIAL_RANGES = (TokenRange(PAD, 0, 0), TokenRange(BOS, 0, 0), TokenRange(EOS, 0, 0))


class Vocabulary:
    def __init__(self, ranges: Sequence[TokenRange]) -> None:
        kinds = [r.kind for r in ranges]
        if len(set(kinds)) != len(kinds):
            raise TokenError(f"duplicate token kinds in {kinds}")
        self.ranges: tuple[TokenRange, ...] = tuple(ranges)
        self._offset: dict[str, int] = {}
        self._range: dict[str, TokenRange] = {}
        tokens: list[str] = []
        kind_of: list[int] = []
        value_of: list[int] = []
        for k, r in enumerate(self.ranges):
            self._offset[r.kind] = len(tokens)
            self._range[r.kind] = r
            for v in range(r.min, r.max + 1):
                tokens.append(r.token(v))
                kind_of.append(k)
                value_of.append(v)
        self.tokens: list[str] = tokens
        self._index = {t: i for i, t in enumerate(tokens)}
        if len(self._index) != len(tokens):
            raise TokenError("two token values share one label")
        #: Per id: index into ``ranges`` and the value; vectorised decoding reads these.
        self.kind_of = np.array(kind_of, dtype=np.int16)
        self.value_of = np.array(value_of, dtype=np.int32)

    @property
    def size(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, kind: str) -> bool:
        return kind in self._range

    def range(self, kind: str) -> TokenRange:
        return self._range[kind]

    def offset(self, kind: str) -> int:
        return self._offset[kind]

    def encode_event(self, kind: str, value: int = 0) -> int:
        r = self._range.get(kind)
        if r is None:
            raise TokenError(f"unknown token kind {kind!r}; kinds are {', '.join(self._range)}")
        if not r.min <= value <= r.max:
            raise TokenError(f"{kind} value must be in {r.min}..{r.max}, got {value}")
        return self._offset[kind] + value - r.min

    def decode_event(self, token_id: int) -> tuple[str, int]:
        if not 0 <= token_id < len(self.tokens):
            raise TokenError(f"token id must be in 0..{len(self.tokens) - 1}, got {token_id}")
        return self.ranges[self.kind_of[token_id]].kind, int(self.value_of[token_id])

    def id(self, token: str) -> int:
        try:
            return self._index[token]
        except KeyError:
            raise TokenError(f"unknown token {token!r}") from None

    def token(self, token_id: int) -> str:
        if not 0 <= token_id < len(self.tokens):
            raise TokenError(f"token id must be in 0..{len(self.tokens) - 1}, got {token_id}")
        return self.tokens[token_id]

    def mask(self, *kinds: str) -> np.ndarray:
        """Boolean mask over ids of the given kinds."""
        m = np.zeros(self.size, dtype=bool)
        for kind in kinds:
            o = self._offset[kind]
            m[o : o + self._range[kind].size] = True
        return m
