"""The grammar accepts every sequence the encoder writes: random scores, odd but valid ones included.

Each token of an encoded score must be allowed by the mask at its step, and the whole sequence must end
where the grammar says it may. The scores are built to hit the corners: unisons (two notes of one pitch
and program starting together, with equal or different durations and velocities), notes of several
programs and drums at one instant, overlapping same-pitch notes, tempo and time-signature changes
mid-piece (off the bar line, unsupported, out of range), notes long enough to chain maximal DURATIONs or
exactly as long as one or two of them, gaps of empty bars or chained TIME_SHIFTs, and pitches outside a
narrowed range (dropped by the encoder).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature
from composer.tokenizer import TokenizerConfig, tokenizer_from_config
from tests.helpers_grammar import accepts, ids_of

TPQ = 480
CONFIGS = {
    "beat": TokenizerConfig(encoding="beat"),
    "beat_narrow": TokenizerConfig(encoding="beat", pitch_min=21, pitch_max=108, velocity_bins=4,
                                   max_duration_quarters=2, max_bar_quarters=4, beat_resolution=4),
    "performance": TokenizerConfig(encoding="performance"),
    "performance_narrow": TokenizerConfig(encoding="performance", pitch_min=21, pitch_max=108,
                                          velocity_bins=4, time_shift_ms=20, max_shift_ms=200),
}  # fmt: skip
TOKENIZERS = {name: tokenizer_from_config(cfg) for name, cfg in CONFIGS.items()}

# times on a coarse grid collide often (unisons, chords, events at one instant); free ticks do not
_tick = st.one_of(st.integers(0, 48).map(lambda k: k * TPQ // 4), st.integers(0, 40 * TPQ))
_duration = st.one_of(
    st.sampled_from([0, 1, TPQ // 4, TPQ, 2 * TPQ, 8 * TPQ, 16 * TPQ, 20 * TPQ]),  # 8 and 16: whole chains
    st.integers(0, 24 * TPQ),
)
_note = st.tuples(
    st.sampled_from([0, 5, 33, 127, -1]),  # program; -1: drums
    st.integers(0, 127),
    st.integers(1, 127),
    _tick,
    _duration,
    # a unison partner: same program, pitch and start; its own duration and velocity (or a copy)
    st.none() | st.tuples(_duration, st.integers(1, 127)),
)


@st.composite
def scores(draw) -> Score:  # type: ignore[no-untyped-def]
    tpq = draw(st.sampled_from([96, 480, 960]))
    k = tpq / TPQ
    by: dict[int, Instrument] = {}
    # at most 30 notes and their partners: fewer than MAX_SAMPLED_POLYPHONY can sound at once
    for prog, pitch, vel, start, dur, partner in draw(st.lists(_note, min_size=1, max_size=30)):
        inst = by.setdefault(prog, Instrument(max(prog, 0), prog < 0, "", []))
        s = int(start * k)
        inst.notes.append(Note(pitch, vel, s, s + int(dur * k)))
        if partner is not None:
            inst.notes.append(Note(pitch, partner[1], s, s + int(partner[0] * k)))
    if draw(st.booleans()):  # a lone note far away: empty bars / chained time shifts before it
        by.setdefault(0, Instrument(0, False, "", [])).notes.append(
            Note(60, 64, int(draw(st.integers(60, 120)) * tpq), int(draw(st.integers(121, 130)) * tpq))
        )
    tempos = [
        TempoChange(int(t * k), q)
        for t, q in draw(st.lists(st.tuples(_tick, st.floats(10, 400)), max_size=4))
    ]
    sigs = [
        TimeSignature(int(t * k), n, d)
        for t, (n, d) in draw(
            st.lists(
                st.tuples(_tick, st.sampled_from([(4, 4), (3, 4), (6, 8), (7, 8), (2, 2), (5, 4), (17, 4)])),
                max_size=3,
            )
        )
    ]
    tempos.sort(key=lambda t: t.tick)
    sigs.sort(key=lambda t: t.tick)
    return Score(tpq, list(by.values()), tempos, sigs)


def assert_accepted(tok, ids) -> None:  # type: ignore[no-untyped-def]
    """Every token allowed by the mask at its step (the failing step named), and the end reached."""
    ids = [int(i) for i in ids]
    assert ids[0] == tok.bos_id
    g = tok.grammar()
    state = g.start(1)
    for i, t in enumerate(ids[1:], 1):
        assert not state.finished[0], "the grammar finished before the sequence did"
        if not state.mask()[0, t]:
            context = " ".join(tok.ids_to_tokens(ids[max(0, i - 12) : i]))
            raise AssertionError(f"token {i} {tok.vocab.token(t)} rejected after ... {context}")
        g.advance(state, np.array([t]))
    assert state.finished[0]
    assert accepts(g, ids)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(TOKENIZERS)), score=scores())
def test_grammar_accepts_every_encoded_score(name, score):
    tok = TOKENIZERS[name]
    ids, stats = tok.encode(score)
    assume(stats.notes_encoded > 0)  # a corpus refuses a file with no note in range
    assert_accepted(tok, ids)
    # and what it accepts decodes and re-encodes to itself, as a sampled sequence must
    assert tok.encode(tok.decode(ids))[0].tolist() == ids.tolist()


def _unison_score(durations: list[int], velocities: list[int]) -> Score:
    notes = [Note(60, v, TPQ, TPQ + d) for d, v in zip(durations, velocities)]
    return Score(TPQ, [Instrument(0, False, "", notes)], [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)])


def test_beat_unison_is_written_shorter_first_and_accepted():
    tok = TOKENIZERS["beat"]
    ids, _ = tok.encode(_unison_score([2 * TPQ, TPQ], [80, 80]))
    toks = tok.ids_to_tokens(ids)
    assert toks[toks.index("POSITION_12") :] == [
        "POSITION_12", "PROGRAM_0", "VELOCITY_19", "PITCH_60", "DURATION_12", "PITCH_60", "DURATION_24", "EOS"
    ]  # fmt: skip
    assert_accepted(tok, ids)


def test_beat_unison_of_chained_durations_and_equal_copies_is_accepted():
    tok = TOKENIZERS["beat"]
    # 20 quarters (96 96 48), then 20 quarters again (a copy at another velocity), then 16 (96 96) first
    ids, _ = tok.encode(_unison_score([20 * TPQ, 20 * TPQ, 16 * TPQ], [80, 30, 80]))
    toks = tok.ids_to_tokens(ids)
    assert toks[toks.index("PITCH_60") :] == [
        "PITCH_60", "DURATION_96", "DURATION_96",
        "PITCH_60", "DURATION_96", "DURATION_96", "DURATION_48",
        "VELOCITY_7", "PITCH_60", "DURATION_96", "DURATION_96", "DURATION_48", "EOS",
    ]  # fmt: skip
    assert_accepted(tok, ids)


def test_beat_grammar_admits_a_unison_only_in_the_encoders_order():
    """Shorter first: a longer-then-shorter unison would decode and re-encode the other way round."""
    tok = TOKENIZERS["beat"]
    head = ["BOS", "BAR", "TIME_SIGNATURE_4/4", "POSITION_0", "TEMPO_120", "PROGRAM_0", "VELOCITY_19"]
    g = tok.grammar()
    for body, ok in [
        (["PITCH_60", "DURATION_24", "PITCH_60", "DURATION_12"], False),
        (["PITCH_60", "DURATION_24", "PITCH_60", "DURATION_24"], True),
        (["PITCH_60", "DURATION_96", "DURATION_5", "PITCH_60", "DURATION_96", "DURATION_4"], False),
        (["PITCH_60", "DURATION_96", "DURATION_5", "PITCH_60", "DURATION_95"], False),
        (["PITCH_60", "DURATION_96", "DURATION_5", "PITCH_60", "DURATION_96", "POSITION_3"], False),
        (["PITCH_60", "DURATION_96", "DURATION_5", "PITCH_60", "DURATION_96", "DURATION_5"], True),
        (["PITCH_60", "DURATION_96", "PITCH_60", "DURATION_96", "DURATION_1"], True),
    ]:
        assert accepts(g, ids_of(tok, [*head, *body, "EOS"])) is ok, body
        if ok:
            score = tok.decode(ids_of(tok, [*head, *body, "EOS"]))
            assert tok.ids_to_tokens(tok.encode(score)[0]) == [*head, *body, "EOS"]


def test_performance_unison_and_overlapping_same_pitch_notes_are_accepted():
    tok = TOKENIZERS["performance"]
    ids, _ = tok.encode(_unison_score([TPQ, 2 * TPQ], [80, 30]))
    assert tok.ids_to_tokens(ids) == [
        "BOS", "TIME_SHIFT_50", "PROGRAM_0", "VELOCITY_19", "NOTE_ON_60", "VELOCITY_7", "NOTE_ON_60",
        "TIME_SHIFT_50", "NOTE_OFF_60", "TIME_SHIFT_50", "NOTE_OFF_60", "EOS",
    ]  # fmt: skip
    assert_accepted(tok, ids)
    # the second starts while the first sounds; they end together (first in, first out)
    notes = [Note(60, 80, 0, 2 * TPQ), Note(60, 80, TPQ, 2 * TPQ), Note(60, 80, 2 * TPQ, 3 * TPQ)]
    score = Score(TPQ, [Instrument(0, False, "", notes)], [TempoChange(0, 120.0)])
    ids, _ = tok.encode(score)
    assert tok.ids_to_tokens(ids) == [
        "BOS", "PROGRAM_0", "VELOCITY_19", "NOTE_ON_60", "TIME_SHIFT_50", "NOTE_ON_60", "TIME_SHIFT_50",
        "NOTE_OFF_60", "NOTE_OFF_60", "NOTE_ON_60", "TIME_SHIFT_50", "NOTE_OFF_60", "EOS",
    ]  # fmt: skip
    assert_accepted(tok, ids)


def test_performance_note_on_of_a_lower_program_may_follow_note_offs_of_a_higher_one():
    """At one instant every NOTE_OFF comes before every NOTE_ON, whatever their programs."""
    tok = TOKENIZERS["performance"]
    bass = Instrument(33, False, "", [Note(40, 80, 0, TPQ)])
    piano = Instrument(0, False, "", [Note(60, 80, TPQ, 2 * TPQ)])
    ids, _ = tok.encode(Score(TPQ, [piano, bass], [TempoChange(0, 120.0)]))
    assert tok.ids_to_tokens(ids) == [
        "BOS", "PROGRAM_33", "VELOCITY_19", "NOTE_ON_40", "TIME_SHIFT_50", "NOTE_OFF_40", "PROGRAM_0",
        "NOTE_ON_60", "TIME_SHIFT_50", "NOTE_OFF_60", "EOS",
    ]  # fmt: skip
    assert_accepted(tok, ids)


def test_beat_ending_begins_no_new_unison():
    """Unisons may stack without bound; once the end is requested none is begun, so the piece can end."""
    tok = TOKENIZERS["beat"]
    g = tok.grammar()
    state = g.start(1)
    for t in ["BAR", "TIME_SIGNATURE_4/4", "POSITION_0", "TEMPO_120", "PROGRAM_0", "VELOCITY_19", "PITCH_127",
              "DURATION_12"]:  # fmt: skip
        g.advance(state, ids_of(tok, [t]))
    pitch, vel = tok.vocab.id("PITCH_127"), tok.vocab.id("VELOCITY_3")
    assert state.mask()[0, pitch] and state.mask()[0, vel]
    g.request_end(state, np.array([True]))
    assert not state.mask()[0, pitch] and not state.mask()[0, vel]
    assert state.mask()[0, tok.eos_id]


def test_performance_polyphony_cap_is_the_one_exception():
    """MAX_SAMPLED_POLYPHONY notes may sound at once; one more is valid data the grammar never samples."""
    from composer.tokenizer.performance_grammar import MAX_SAMPLED_POLYPHONY

    tok = TOKENIZERS["performance"]
    for n, ok in [(MAX_SAMPLED_POLYPHONY, True), (MAX_SAMPLED_POLYPHONY + 1, False)]:
        notes = [Note(20 + k, 80, 0, TPQ) for k in range(n)]
        ids, _ = tok.encode(Score(TPQ, [Instrument(0, False, "", notes)], [TempoChange(0, 120.0)]))
        assert accepts(tok.grammar(), ids) is ok
