"""Sampling masks: whatever the model's logits, sampled sequences are valid and canonical."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.tokenizer import TokenizerConfig, tokenizer_from_config
from tests.helpers_grammar import accepts, ids_of
from tests.midi_factory import SCORES

TOKENIZERS = {enc: tokenizer_from_config(TokenizerConfig(encoding=enc)) for enc in ("beat", "performance")}


def sample(tok, rng: np.random.Generator, steps: int, batch: int = 3, end_after: int | None = None,
           peaky: float = 3.0) -> list[list[int]]:  # fmt: skip
    """Sample under the grammar with random logits; request the end after `end_after` steps."""
    g = tok.grammar()
    state = g.start(batch)
    seqs = [[tok.bos_id] for _ in range(batch)]
    for step in range(steps):
        if end_after is not None and step == end_after:
            g.request_end(state, np.ones(batch, dtype=bool))
        mask = state.mask()
        assert mask.any(axis=1).all(), "the grammar left no token to choose"
        logits = rng.normal(size=mask.shape) * peaky
        logits[~mask] = -np.inf
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        toks = np.array([rng.choice(len(row), p=row) for row in p])
        g.advance(state, toks)
        for s, t in zip(seqs, toks):
            if s[-1] != tok.eos_id:
                s.append(int(t))
        if state.finished.all():
            break
    return seqs


@pytest.mark.parametrize("encoding", ["beat", "performance"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), peaky=st.sampled_from([0.5, 3.0, 8.0]))
def test_sampled_sequences_are_fixed_points_of_decode_encode(encoding, seed, peaky):
    tok = TOKENIZERS[encoding]
    # closing can take two tokens per sounding note (random logits leave many sounding)
    for seq in sample(tok, np.random.default_rng(seed), steps=900, end_after=250, peaky=peaky):
        assert seq[-1] == tok.eos_id, "request_end must finish the piece"
        assert accepts(tok.grammar(), seq)
        score = tok.decode(seq)
        assert all(n.end > n.start for i in score.instruments for n in i.notes)
        if score.note_count:
            if encoding == "performance":  # an end requested during silence may leave a trailing shift
                while tok.vocab.decode_event(seq[-2])[0] == "TIME_SHIFT":
                    seq = seq[:-2] + seq[-1:]
            assert tok.encode(score)[0].tolist() == seq


@pytest.mark.parametrize("encoding", ["beat", "performance"])
@pytest.mark.parametrize("name", sorted(SCORES))
def test_encoder_output_is_valid_under_the_grammar(encoding, name):
    tok = TOKENIZERS[encoding]
    ids = tok.encode(SCORES[name]())[0]
    assert accepts(tok.grammar(), ids)


def test_beat_ending_stops_on_a_bar_line():
    tok = TOKENIZERS["beat"]
    rng = np.random.default_rng(0)
    for seq in sample(tok, rng, steps=600, batch=4, end_after=100):
        toks = tok.ids_to_tokens(seq)
        # no BAR after the end was requested: the last bar is finished, then EOS
        assert toks[-1] == "EOS" and "BAR" not in toks[101:]


def test_performance_polyphony_is_capped():
    from composer.tokenizer.performance_grammar import MAX_SAMPLED_POLYPHONY

    tok = TOKENIZERS["performance"]
    g = tok.grammar()
    for seq in sample(tok, np.random.default_rng(2), steps=1500, batch=2, peaky=0.5):
        st_ = g.start(1)
        for t in seq[1:]:
            g.advance(st_, np.array([t]))
            assert st_.rows[0].n_sounding <= MAX_SAMPLED_POLYPHONY


def test_performance_ending_closes_every_note():
    tok = TOKENIZERS["performance"]
    for seq in sample(tok, np.random.default_rng(1), steps=800, batch=4, end_after=120):
        toks = tok.ids_to_tokens(seq)
        ons = sum(t.startswith("NOTE_ON") for t in toks)
        offs = sum(t.startswith("NOTE_OFF") for t in toks)
        assert ons == offs and toks[-1] == "EOS"


def test_state_tracks_bars_seconds_and_notes():
    tok = TOKENIZERS["beat"]
    ids = tok.encode(SCORES["single"]())[0]  # 4 bars of 4/4 at 120 bpm
    g = tok.grammar()
    st_ = g.start(1)
    for t in ids[1:-1]:
        g.advance(st_, np.array([t]))
    assert st_.bars[0] == 4 and st_.notes[0] == 20
    assert st_.seconds[0] == pytest.approx(7.5)  # the last onset: bar 4, beat 4 (2 s a bar)
    perf = TOKENIZERS["performance"]
    g2 = perf.grammar()
    st2 = g2.start(1)
    for t in perf.encode(SCORES["single"]())[0][1:]:
        g2.advance(st2, np.array([t]))
    assert st2.finished[0] and st2.seconds[0] == pytest.approx(8.0)


def test_strict_advance_rejects_a_token_the_mask_forbids():
    from composer.errors import TokenError

    tok = TOKENIZERS["beat"]
    g = tok.grammar()
    state = g.start(1)
    with pytest.raises(TokenError, match="PITCH_60 is not allowed here"):
        g.advance(state, np.array([tok.vocab.id("PITCH_60")]))
    g.advance(state, np.array([tok.vocab.id("PITCH_60")]), strict=False)  # primers may be lenient


def test_lenient_notes_before_any_program_are_program_0_as_the_decoder_reads_them():
    """A primer's note events before any PROGRAM: the grammar keeps them where the decoder does."""
    tok = TOKENIZERS["performance"]
    g = tok.grammar()
    state = g.start(1)
    toks = ["NOTE_ON_60", "NOTE_ON_62", "TIME_SHIFT_10", "NOTE_OFF_60"]
    for t in ids_of(tok, toks):
        g.advance(state, np.array([t]), strict=False)
    row = state.rows[0]
    assert row.n_sounding == 1 and row.sounding[0, 62] == 1 and row.sounding.sum() == 1  # not the drums row
    assert [n.pitch for i in tok.decode(ids_of(tok, ["BOS", *toks])).instruments for n in i.notes] == [
        60, 62
    ]  # fmt: skip
    # the sampler may now close the note that sounds, and only that one
    g.advance(state, ids_of(tok, ["PROGRAM_0"]))
    mask = state.mask()[0]
    assert mask[tok.vocab.id("NOTE_OFF_62")] and not mask[tok.vocab.id("NOTE_OFF_60")]


@pytest.mark.parametrize("qpm", [27.5, 90.0, 120.0])
def test_beat_grammar_counts_seconds_at_the_tempo_the_decoded_file_has(tmp_path, qpm):
    """--seconds stops on the grammar's clock: it must be the decoded song's, rounded tempo labels and all."""
    from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, read_midi, write_midi

    tok = TOKENIZERS["beat"]
    notes = [Note(60, 80, i * 480, i * 480 + 240) for i in range(16)]
    score = Score(480, [Instrument(0, False, "", notes)], [TempoChange(0, qpm), TempoChange(6 * 480, 200.0)],
                  [TimeSignature(0, 4, 4)])  # fmt: skip
    ids = tok.encode(score)[0]
    g = tok.grammar()
    state = g.start(1)
    for t in ids[1:]:
        g.advance(state, np.array([t]))
    write_midi(tok.decode(ids), tmp_path / "song.mid")
    song = read_midi(tmp_path / "song.mid")
    last_onset = max(n.start for i in song.instruments for n in i.notes)
    # the file stores whole microseconds per quarter: equal to well within a millisecond
    assert state.seconds[0] == pytest.approx(float(song.ticks_to_seconds([last_onset])[0]), rel=1e-6)


def _kind(tok, token: int) -> str:
    return tok.vocab.decode_event(int(token))[0]


def _mask_once(g, ids, done) -> np.ndarray:
    """The grammar's mask right after the first prefix of ``ids`` (BOS left out) for which ``done``."""
    st_ = g.start(1)
    seen: list[int] = []
    for t in ids[1:]:
        g.advance(st_, np.array([t]), strict=False)
        seen.append(int(t))
        if done(seen):
            return g.row_mask(st_.rows[0])
    raise AssertionError("the prefix was never reached")


def test_sampling_can_cap_a_unison_the_encoder_keeps():
    """Five notes of one pitch starting together: the encoder keeps them and the exact grammar admits them;
    with ``limit_unisons(3)`` the fourth is masked (the pitch above is still open), as sampling uses it."""
    from composer.midi import Note
    from composer.sample import MAX_UNISON

    tok = TOKENIZERS["beat"]
    score = SCORES["single"]()
    first = min(score.instruments[0].notes, key=lambda n: (n.start, n.pitch))
    twins = [Note(first.pitch, first.velocity, first.start, first.end) for _ in range(4)]
    score.instruments[0].notes += twins
    ids = tok.encode(score)[0]
    assert sorted(tok.decode(ids).instruments[0].notes, key=lambda n: n.start)[4].pitch == first.pitch
    capped = _limit_bites(tok, ids, "limit_unisons", tight=3, loose=5)
    # the mask itself, right after the third note of the unison
    pitch_id = tok.vocab.id(f"PITCH_{first.pitch}")
    third = lambda seen: seen.count(pitch_id) == 3 and _kind(tok, seen[-1]) == "DURATION"  # noqa: E731
    mask = _mask_once(capped, ids, third)
    vel = [i for i in range(tok.vocab.size) if _kind(tok, i) == "VELOCITY"]
    pitch_ok = any(mask[vel]) or mask[tok.vocab.id(f"PITCH_{first.pitch + 1}")]
    assert not mask[pitch_id] and pitch_ok
    assert MAX_UNISON >= 2  # real music doubles notes: sampling must still be able to
    with pytest.raises(ValueError):
        capped.limit_unisons(0)


def _limit_bites(tok, ids, limit: str, tight: int, loose: int):
    """``ids`` fit the exact grammar and the ``loose`` limit but not the ``tight`` one; the tight grammar."""
    assert accepts(tok.grammar(), ids)
    capped, roomy = tok.grammar(), tok.grammar()
    getattr(capped, limit)(tight)
    getattr(roomy, limit)(loose)
    assert not accepts(capped, ids)
    assert accepts(roomy, ids)
    return capped


def test_sampling_can_cap_empty_bars_in_a_row_the_encoder_keeps():
    """Four empty bars between two notes: the encoder writes them and the exact grammar admits them; with
    ``limit_empty_bars(2)`` the third BAR in a row is masked (a position, for a note, is still open)."""
    from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature
    from composer.sample import MAX_EMPTY_BARS

    tok = TOKENIZERS["beat"]
    bar = 4 * 480
    notes = [Note(60, 80, 0, 480), Note(62, 80, 5 * bar, 5 * bar + 480)]  # bars 2-5 empty
    meter = [TimeSignature(0, 4, 4)]
    score = Score(480, [Instrument(0, False, "Piano", notes)], [TempoChange(0, 120.0)], meter)
    ids = tok.encode(score)[0]
    assert [n.start for n in tok.decode(ids).instruments[0].notes] == [0, 5 * bar]
    capped = _limit_bites(tok, ids, "limit_empty_bars", tight=2, loose=4)
    bar_id = tok.vocab.id("BAR")
    mask = _mask_once(capped, ids, lambda seen: seen.count(bar_id) == 4)  # bars 2, 3 empty; bar 4 begun
    assert not mask[bar_id] and mask[tok.vocab.id("POSITION_0")]
    assert MAX_EMPTY_BARS >= 1
    with pytest.raises(ValueError):
        capped.limit_empty_bars(-1)
