"""What may come next: per-step masks that keep sampled token sequences valid by construction.

The masks admit exactly the sequences the encoder writes (its canonical order), so a sampled sequence
decodes to valid music and re-encodes to itself. Each encoding has its grammar, which its tokenizer's
``grammar()`` returns: ``BeatGrammar`` (composer.tokenizer.beat_grammar) and ``PerformanceGrammar``
(composer.tokenizer.performance_grammar); their docstrings give the rules.

Each row of a batch keeps a small state; ``mask()`` builds the allowed set from precomputed per-kind
masks plus a few slices, so the per-token cost is tiny and the same however long the piece.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from composer.errors import TokenError
from composer.tokenizer.vocab import BOS, EOS, PAD, Vocabulary


@dataclass
class Row:
    """The state of one sequence that every grammar keeps; each grammar's row adds its own."""

    last: str = "BOS"  # kind of the last token
    last_value: int = -1
    bars: int = 0  # bars begun (stays 0 in an encoding without bars)
    notes: int = 0
    seconds: float = 0.0  # music time so far
    finished: bool = False
    ending: bool = False  # the end was requested: the grammar steers to it


R = TypeVar("R", bound=Row)


class GrammarState(Generic[R]):
    """The state of ``batch`` sequences of one grammar, each positioned right after BOS."""

    def __init__(self, grammar: Grammar[R], rows: list[R]) -> None:
        self.grammar = grammar
        self.rows = rows
        need = grammar.required_programs
        # per row, the PROGRAM ids of the instruments ``limit_programs(every=True)`` still waits for
        self.unplayed: list[set[int]] | None = None if need is None else [set(need) for _ in rows]

    @property
    def finished(self) -> np.ndarray:
        return np.array([r.finished for r in self.rows], dtype=bool)

    @property
    def seconds(self) -> np.ndarray:
        return np.array([r.seconds for r in self.rows], dtype=np.float64)

    @property
    def bars(self) -> np.ndarray:
        return np.array([r.bars for r in self.rows], dtype=np.int64)

    @property
    def notes(self) -> np.ndarray:
        return np.array([r.notes for r in self.rows], dtype=np.int64)

    def mask(self) -> np.ndarray:
        row_mask = self.grammar.row_mask
        m = np.stack([row_mask(r) for r in self.rows])
        keep = self.grammar.program_filter
        if keep is not None:
            limited = m & keep
            ok = limited.any(axis=1)  # a row the limit would leave without a choice keeps its own mask
            m = np.where(ok[:, None], limited, m)
        if self.unplayed is not None:
            for i, wait in enumerate(self.unplayed):
                ids = [t for t in wait if m[i, t]]
                if ids:  # an instrument may start here that has not played yet: one of those comes next
                    m[i] = False
                    m[i, ids] = True
        return m


class Grammar(ABC, Generic[R]):
    """Base: subclasses define a row state, its mask and its update."""

    #: (token kind, cost) for closing a piece by force: the cheapest allowed token leads fastest to the end.
    close_kinds: tuple[tuple[str, float], ...] = ()

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self.size = vocab.size
        self.pad_id = vocab.encode_event(PAD)
        self.bos_id = vocab.encode_event(BOS)
        self.eos_id = vocab.encode_event(EOS)
        self.pad_only = self._mask()
        self.pad_only[self.pad_id] = True
        self.max_unison: int | None = None  # see limit_unisons
        self.max_empty_bars: int | None = None  # see limit_empty_bars
        self.program_filter: np.ndarray | None = None  # see limit_programs
        self.required_programs: frozenset[int] | None = None  # PROGRAM ids; see limit_programs

    def limit_unisons(self, n: int) -> None:
        """Admit at most ``n`` notes of one program and pitch starting together (a unison), where the
        encoding has them; None (the default) admits as many as the encoder writes.

        For sampling: real music doubles a note two or three times at most, but a sampler that copies its
        own past (the neural cache) can stack one note dozens of times, which sounds as one.
        """
        if n < 1:
            raise ValueError(f"a unison limit must be at least 1, got {n}")
        self.max_unison = n

    def limit_empty_bars(self, n: int) -> None:
        """Admit at most ``n`` empty bars in a row, where the encoding has bars; None (the default) as
        many as the encoder writes.

        For sampling: once a model has written one empty bar, its state can favour another, and a song
        falls silent for many bars; real music rarely rests more than a bar or two in every part at once.
        """
        if n < 0:
            raise ValueError(f"an empty-bar limit must be at least 0, got {n}")
        self.max_empty_bars = n

    def limit_programs(self, programs: set[int] | frozenset[int], every: bool = False) -> None:
        """Admit only these PROGRAM values (General MIDI programs, 128 for drums): every note a sampled
        song plays is then one of these instruments'. A row whose only choices are other programs (which
        no grammar here leaves once its notes are of these programs) keeps them.

        With ``every``, each of them also plays: until an instrument has had its first note, wherever the
        grammar admits its PROGRAM token, only the waiting instruments' PROGRAM tokens are admitted (a
        PROGRAM is always followed by a note), so the song's first onsets bring them in."""
        if "PROGRAM" not in self.vocab:
            raise ValueError("this encoding has no programs to limit")
        r = self.vocab.range("PROGRAM")
        bad = [p for p in programs if not r.min <= p <= r.max]
        if not programs or bad:
            raise ValueError(f"programs must be a non-empty set in {r.min}..{r.max}, got {sorted(programs)}")
        keep = np.ones(self.size, dtype=bool)
        o = self.vocab.offset("PROGRAM")
        keep[o : o + r.size] = False
        keep[[o + p - r.min for p in programs]] = True
        self.program_filter = keep
        self.required_programs = frozenset(o + p - r.min for p in programs) if every else None

    def _mask(self, *kinds: str) -> np.ndarray:
        return self.vocab.mask(*kinds) if kinds else np.zeros(self.size, dtype=bool)

    def _kind_value(self, token: int) -> tuple[str, int]:
        return self.vocab.decode_event(int(token))

    def start(self, batch: int) -> GrammarState[R]:
        return GrammarState(self, [self._new_row() for _ in range(batch)])

    def advance(self, state: GrammarState[R], tokens: np.ndarray, strict: bool = True) -> None:
        for row, t in zip(state.rows, np.asarray(tokens).tolist()):
            if row.finished:
                continue
            if strict and not self.row_mask(row)[t]:
                raise TokenError(f"token {self.vocab.token(t)} is not allowed here")
            self._step(row, t)
        if state.unplayed is not None:
            for wait, t in zip(state.unplayed, np.asarray(tokens).tolist()):
                wait.discard(t)

    def request_end(self, state: GrammarState[R], rows: np.ndarray) -> None:
        for row, flag in zip(state.rows, np.asarray(rows).tolist()):
            if flag:
                row.ending = True

    def close_costs(self) -> np.ndarray:
        """Per token id, how far it leads from the end of a piece (lower: closer; PAD never)."""
        cost = np.full(self.size, 50.0)
        for kind, c in self.close_kinds:
            m = self.vocab.mask(kind)
            # later positions / longer shifts / durations cost a little more, so the earliest one wins
            cost[m] = c + np.linspace(0, 0.5, int(m.sum()))
        cost[self.pad_id] = 100
        return cost

    # subclass hooks
    @abstractmethod
    def _new_row(self) -> R: ...

    @abstractmethod
    def row_mask(self, r: R) -> np.ndarray:
        """The tokens allowed next in row ``r`` (PAD only once it finished)."""

    @abstractmethod
    def _step(self, r: R, token: int) -> None: ...


class Constraint(ABC):
    """More rules on top of a grammar for one sampling run: tokens a row must write, tokens it may not.

    ``mask`` narrows (or, for a token the constraint forces, replaces) the grammar's mask of a batch;
    ``advance`` follows the tokens chosen. Forced tokens are the constraint's: the sampler advances the
    grammar leniently where one is present (``strict`` False), since a forced note may be one the
    grammar's sampling limits (unisons, an ending bar) would not start.
    """

    #: Bars the constraint's music spans (0: it does not say).
    bars: int = 0

    @abstractmethod
    def start(self, batch: int) -> None:
        """Every row at the beginning (right after BOS)."""

    @abstractmethod
    def mask(self, state: GrammarState[Any], mask: np.ndarray) -> np.ndarray:
        """``mask`` (batch x vocab, the grammar's and sampling's) with this constraint applied."""

    @abstractmethod
    def advance(self, state: GrammarState[Any], tokens: np.ndarray) -> None:
        """Follow the tokens just chosen (before ``state`` itself advances past them)."""

    @abstractmethod
    def done(self, row: int) -> bool:
        """Whether row ``row`` has written everything the constraint requires."""

    @abstractmethod
    def kept_in(self, ids: np.ndarray) -> bool:
        """Whether a finished sequence holds what the constraint promised (checked before it is used)."""
