"""Parts kept note for note while others are sampled around them (``composer accompany``), for ``beat``.

The kept parts are encoded on their own; their events (a bar's TIME_SIGNATURE, a position's TEMPO, each
note's PROGRAM/VELOCITY/PITCH/DURATION) are then the tokens a sampled row must write, at their bar and
position, in the encoder's canonical order. Per row the constraint knows the next kept event and:

* lets the row move in time only up to it (no BAR past its bar, no POSITION past its position, no EOS
  while events remain);
* at its position, lets only the added instruments below its program play first (notes at a position are
  ordered by program), then admits its first token; once that is chosen the rest of the event is forced;
* never lets the row start a note of a kept instrument, change the tempo or time signature by itself, or
  lengthen a kept note (a maximal DURATION chains);
* brings each added instrument in at the first place one may start, as ``limit_programs(every=True)`` does.

So the song's kept parts decode to exactly the kept notes (on the encoder's grid), and everything else is
the model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from composer.tokenizer.grammar import Constraint, GrammarState
from composer.tokenizer.vocab import Vocabulary


@dataclass
class KeptEvent:
    """What the kept parts write at one place: ``bar`` (1-based), ``pos`` (-1: right after the BAR)."""

    bar: int
    pos: int
    kind: str  # TIME_SIGNATURE, TEMPO or NOTE
    tokens: list[int] = field(default_factory=list)  # TIME_SIGNATURE/TEMPO: the token; NOTE: PITCH, DURATIONs
    program: int = -1  # NOTE: its PROGRAM value and VELOCITY bin
    velocity: int = -1


def kept_events(vocab: Vocabulary, ids: np.ndarray) -> tuple[list[KeptEvent], int]:
    """The kept parts' events in token order, and their bars."""
    bar, pos, prog, vel = 0, -1, -1, -1
    events: list[KeptEvent] = []
    for t in np.asarray(ids).tolist():
        kind, val = vocab.decode_event(int(t))
        if kind == "BAR":
            bar, pos = bar + 1, -1
        elif kind == "POSITION":
            pos = val
        elif kind in ("TIME_SIGNATURE", "TEMPO"):
            events.append(KeptEvent(bar, pos, kind, [int(t)]))
        elif kind == "PROGRAM":
            prog = val
        elif kind == "VELOCITY":
            vel = val
        elif kind == "PITCH":
            events.append(KeptEvent(bar, pos, "NOTE", [int(t)], program=prog, velocity=vel))
        elif kind == "DURATION":
            events[-1].tokens.append(int(t))
    return events, bar


class BeatKeep(Constraint):
    """Keep the parts encoded as ``ids`` (BOS ... EOS) and add ``added`` (PROGRAM values)."""

    def __init__(
        self,
        vocab: Vocabulary,
        ids: np.ndarray,
        added: set[int],
        free_bars: tuple[int, int] | None = None,
        free_programs: set[int] | None = None,
    ) -> None:
        self.vocab = vocab
        events, self.bars = kept_events(vocab, ids)
        self.kept_programs = {e.program for e in events if e.kind == "NOTE"}
        if self.kept_programs & set(added):
            raise ValueError(f"programs both kept and added: {sorted(self.kept_programs & set(added))}")
        self.added = set(added)
        self.free_bars = free_bars
        if free_bars is not None:  # the notes there of the free programs (all: None) are the model's
            lo, hi = free_bars
            self.free_programs = set(self.kept_programs if free_programs is None else free_programs)
            events = [
                e
                for e in events
                if not (e.kind == "NOTE" and lo <= e.bar <= hi and e.program in self.free_programs)
            ]
        else:
            self.free_programs = set()
        self.events = events
        self.o_prog = vocab.offset("PROGRAM")
        self.p_min = vocab.range("PROGRAM").min
        self.n_prog = vocab.range("PROGRAM").size
        self.o_pos = vocab.offset("POSITION")
        self.n_pos = vocab.range("POSITION").size
        self.o_vel = vocab.offset("VELOCITY")
        self.bar_id = vocab.encode_event("BAR")
        self.eos_id = vocab.encode_event("EOS")
        self.max_dur = vocab.range("DURATION").max
        self.fixed = vocab.mask("TIME_SIGNATURE", "TEMPO")  # only ever forced
        self.kept_ids = self._program_ids(self.kept_programs)  # outside the free bars
        self.kept_ids_free = self._program_ids(self.kept_programs - self.free_programs)  # inside them
        self.note_ids = vocab.mask("VELOCITY", "PITCH", "DURATION")
        self.added_ids = {self.o_prog + p - self.p_min for p in added}
        self.start(1)

    def _program_ids(self, programs: set[int]) -> np.ndarray:
        m = np.zeros(self.vocab.size, dtype=bool)
        m[[self.o_prog + p - self.p_min for p in programs]] = True
        return m

    def _free_bar(self, r: Any) -> bool:
        return self.free_bars is not None and self.free_bars[0] <= r.bars <= self.free_bars[1]

    def start(self, batch: int) -> None:
        self.k = [0] * batch  # the next kept event of each row
        self.queue: list[list[int]] = [[] for _ in range(batch)]  # the rest of an event begun, forced
        self.entry: list[list[int] | None] = [None] * batch  # where mask() admitted an event: its tokens
        self.waiting = [set(self.added_ids) for _ in range(batch)]

    def done(self, row: int) -> bool:
        return self.k[row] == len(self.events) and not self.queue[row]

    def _note_tokens(self, r: Any, e: KeptEvent) -> list[int]:
        out = []
        if r.prog != e.program:
            out.append(self.o_prog + e.program - self.p_min)
        if r.vel != e.velocity:
            out.append(self.o_vel + e.velocity)
        return out + e.tokens

    def mask(self, state: GrammarState[Any], mask: np.ndarray) -> np.ndarray:
        for i, r in enumerate(state.rows):
            self.entry[i] = None
            if r.finished:
                continue
            m = mask[i]
            if self.queue[i]:
                m[:] = False
                m[self.queue[i][0]] = True
                continue
            m[self.fixed] = False
            free = self._free_bar(r)
            m[self.kept_ids_free if free else self.kept_ids] = False
            blocked = r.prog in self.kept_programs and not (free and r.prog in self.free_programs)
            if blocked:  # no free notes on a kept instrument, no kept note lengthened
                m[self.note_ids] = False
            e = self.events[self.k[i]] if self.k[i] < len(self.events) else None
            if not (self.added or (free and self.free_programs)):
                self._nothing_to_play(r, m, e)
            if e is not None:
                self._toward(r, m, e, i)
            wait = [t for t in self.waiting[i] if m[t]]
            if wait:  # an added instrument that has not played yet may start here: it does
                entry = self.entry[i]
                m[:] = False
                m[wait] = True
                if entry is not None:
                    m[entry[0]] = True
        return mask

    def _nothing_to_play(self, r: Any, m: np.ndarray, e: KeptEvent | None) -> None:
        """A bar where the model may play nothing: only the next kept event's position, else on to the
        next bar (an empty one too: the kept music rests there)."""
        m[self.o_pos : self.o_pos + self.n_pos] = False
        if e is not None and e.bar == r.bars and e.pos > r.pos:
            m[self.o_pos + e.pos] = True
        elif r.last in ("BAR", "TIME_SIGNATURE", "DURATION", "TEMPO") and not r.ending:
            m[self.bar_id] = True

    def _toward(self, r: Any, m: np.ndarray, e: KeptEvent, i: int) -> None:
        """Narrow row ``r``'s mask ``m`` on its way to kept event ``e``; admit ``e`` where it is due."""
        m[self.eos_id] = False
        if r.bars < e.bar:
            return
        m[self.bar_id] = False
        if e.pos >= 0:
            m[self.o_pos + e.pos + 1 : self.o_pos + self.n_pos] = False
        tokens: list[int] | None = None
        if e.kind == "TIME_SIGNATURE":
            if r.last == "BAR":
                tokens = e.tokens
        elif r.pos == e.pos:
            if e.kind == "TEMPO":
                if r.last == "POSITION":
                    tokens = e.tokens
            else:  # a note: only added instruments below its program may play before it here
                m[self.o_prog + e.program - self.p_min : self.o_prog + self.n_prog] = False
                if r.prog >= e.program:
                    m[self.note_ids] = False
                chaining = r.last == "DURATION" and r.last_value == self.max_dur and r.note_dur < r.dur_floor
                if not chaining and r.last in ("POSITION", "TEMPO", "DURATION"):
                    tokens = self._note_tokens(r, e)
        if tokens is None:
            return
        if e.kind != "NOTE":  # a kept tempo or time signature is the only way on
            m[:] = False
        m[tokens[0]] = True
        self.entry[i] = tokens

    def advance(self, state: GrammarState[Any], tokens: np.ndarray) -> None:
        for i, (r, t) in enumerate(zip(state.rows, np.asarray(tokens).tolist())):
            if r.finished:
                continue
            q = self.queue[i]
            if q:
                assert t == q[0], (t, q)
                q.pop(0)
                if not q:
                    self.k[i] += 1
            elif self.entry[i] is not None and t == self.entry[i][0]:  # type: ignore[index]
                self.queue[i] = list(self.entry[i][1:])  # type: ignore[index]
                if not self.queue[i]:
                    self.k[i] += 1
            self.waiting[i].discard(t)

    def _kept_view(self, events: list[KeptEvent], added: set[int]) -> list[tuple[int, ...]]:
        out: list[tuple[int, ...]] = []
        lo, hi = self.free_bars if self.free_bars is not None else (0, -1)
        for e in events:
            if e.kind == "NOTE" and e.program not in added:
                if lo <= e.bar <= hi and e.program in self.free_programs:
                    continue
                dur = sum(self.vocab.decode_event(t)[1] for t in e.tokens[1:])
                out.append((e.bar, e.pos, e.program, e.velocity, e.tokens[0], dur))
            elif e.kind != "NOTE":
                out.append((e.bar, e.pos, e.tokens[0]))
        return out

    def kept_in(self, ids: np.ndarray) -> bool:
        """Whether the sampled ``ids`` hold exactly the kept events (and only the added and free notes
        besides): the constraint's promise, checked on every song before it is written."""
        got, bars = kept_events(self.vocab, ids)
        view = self._kept_view
        return bars == self.bars and view(got, self.added) == view(self.events, self.added)
