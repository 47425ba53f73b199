"""Notes <-> tokens: golden ids, configs, and round trips that keep every note within one grid/time step."""

from __future__ import annotations

import json
import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.errors import ConfigError, TokenError
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, read_midi, write_midi
from composer.tokenizer import (
    ENCODINGS,
    TOKEN_HEADER,
    TOKENIZERS,
    BeatTokenizer,
    PerformanceTokenizer,
    Tokenizer,
    TokenizerConfig,
    TokenRange,
    Vocabulary,
    tokenizer_for_text,
    tokenizer_from_config,
)
from tests.helpers_grammar import ids_of
from tests.midi_factory import SCORES, TPQ

BEAT = BeatTokenizer(TokenizerConfig())
PERF = PerformanceTokenizer(TokenizerConfig(encoding="performance"))

# --------------------------------------------------------------------------------------------- vocabulary

BEAT_GOLDEN = {
    "PAD": 0, "BOS": 1, "EOS": 2, "BAR": 3, "POSITION_0": 4, "POSITION_95": 99,
    "TIME_SIGNATURE_1/1": 100, "TIME_SIGNATURE_3/4": 108, "TIME_SIGNATURE_4/4": 109,
    "TEMPO_24": 194, "TEMPO_120": 231, "PROGRAM_0": 254, "PROGRAM_DRUMS": 382, "VELOCITY_0": 383,
    "PITCH_0": 415, "PITCH_60": 475, "PITCH_127": 542, "DURATION_1": 543, "DURATION_96": 638,
}  # fmt: skip
PERF_GOLDEN = {
    "PAD": 0, "BOS": 1, "EOS": 2, "PROGRAM_0": 3, "PROGRAM_DRUMS": 131, "VELOCITY_0": 132,
    "NOTE_ON_0": 164, "NOTE_ON_127": 291, "NOTE_OFF_0": 292, "TIME_SHIFT_1": 420, "TIME_SHIFT_100": 519,
}  # fmt: skip


@pytest.mark.parametrize(("tok", "golden", "size"), [(BEAT, BEAT_GOLDEN, 639), (PERF, PERF_GOLDEN, 520)])
def test_golden_token_ids(tok, golden, size):
    for token, token_id in golden.items():
        assert tok.vocab.id(token) == token_id
        assert tok.vocab.token(token_id) == token
    assert tok.vocab.size == size
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)


def test_vocabulary_is_derived_from_ranges():
    v = Vocabulary([TokenRange("A", 0, 0), TokenRange("B", 5, 7), TokenRange("C", 0, 1, ("x", "y"))])
    assert v.tokens == ["A", "B_5", "B_6", "B_7", "C_x", "C_y"]
    assert v.encode_event("B", 6) == 2
    assert v.decode_event(2) == ("B", 6)
    with pytest.raises(TokenError, match=r"B value must be in 5\.\.7, got 9"):
        v.encode_event("B", 9)
    with pytest.raises(TokenError, match=r"token id must be in 0\.\.5, got 6"):
        v.decode_event(6)


def test_golden_beat_sequence():
    score = Score(
        TPQ,
        [Instrument(0, False, "", [Note(60, 100, 0, 480), Note(64, 100, 0, 480), Note(67, 50, 960, 2400)])],
        [TempoChange(0, 120.0)],
        [TimeSignature(0, 4, 4)],
    )
    ids, stats = BEAT.encode(score)
    assert BEAT.ids_to_tokens(ids) == [
        "BOS", "BAR", "TIME_SIGNATURE_4/4", "POSITION_0", "TEMPO_120", "PROGRAM_0", "VELOCITY_24",
        "PITCH_60", "DURATION_12", "PITCH_64", "DURATION_12", "POSITION_24", "VELOCITY_12", "PITCH_67",
        "DURATION_36", "EOS",
    ]  # fmt: skip
    assert stats.notes_encoded == 3 and not stats.lost()


def test_golden_performance_sequence_splits_long_gaps_into_maximal_shifts():
    score = Score(TPQ, [Instrument(0, False, "", [Note(60, 100, 0, 480), Note(67, 50, 2400, 2880)])])
    ids, _ = PERF.encode(score)
    assert PERF.ids_to_tokens(ids) == [
        "BOS", "PROGRAM_0", "VELOCITY_24", "NOTE_ON_60", "TIME_SHIFT_50", "NOTE_OFF_60", "TIME_SHIFT_100",
        "TIME_SHIFT_100", "VELOCITY_12", "NOTE_ON_67", "TIME_SHIFT_50", "NOTE_OFF_67", "EOS",
    ]  # fmt: skip


def test_long_note_chains_maximal_durations_instead_of_being_cut():
    score = Score(TPQ, [Instrument(0, False, "", [Note(40, 64, 0, 20 * TPQ)])])
    ids, stats = BEAT.encode(score)
    toks = BEAT.ids_to_tokens(ids)
    assert toks[toks.index("PITCH_40") + 1 :][:3] == ["DURATION_96", "DURATION_96", "DURATION_48"]
    back = BEAT.decode(ids).instruments[0].notes
    assert [(n.start, n.end) for n in back] == [(0, 20 * TPQ)]
    assert not stats.lost()


# ------------------------------------------------------------------------------------------------- config


def test_config_json_round_trip_and_unknown_keys_rejected(tmp_path):
    cfg = TokenizerConfig(encoding="performance", velocity_bins=16)
    cfg.save(tmp_path / "t.json")
    assert TokenizerConfig.load(tmp_path / "t.json") == cfg
    with pytest.raises(ConfigError, match="unknown tokenizer config keys: colour"):
        TokenizerConfig.from_dict({**cfg.to_dict(), "colour": "red"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        TokenizerConfig.load(tmp_path / "bad.json")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encoding": "remi"}, "encoding must be one of beat, performance, got 'remi'"),
        ({"velocity_bins": 0}, r"velocity_bins must be an integer in 1\.\.127, got 0"),
        ({"pitch_min": 60, "pitch_max": 50}, r"pitch_max must be an integer in 60\.\.127, got 50"),
        ({"time_shift_ms": 7}, "max_shift_ms must be a multiple of time_shift_ms"),
        ({"beat_resolution": 1.5}, r"beat_resolution must be an integer in 1\.\.96"),
    ],
)
def test_config_errors_name_value_and_range(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TokenizerConfig(**kwargs)


# ------------------------------------------------------------------------------------------ fidelity checks


def velocity_bin(tok: Tokenizer, velocity: int) -> int:
    """The velocity's bin by the definition: 1..127 split into ``velocity_bins`` equal parts."""
    return (min(max(velocity, 1), 127) - 1) * tok.config.velocity_bins // 127


def _beat_check(orig: Score, dec: Score, tok: BeatTokenizer) -> None:
    """Every note's pitch, program and drum flag exact; onset/offset within one grid step; velocity bin.

    Per instrument and pitch, onsets (with their velocity bins) and ends are compared as sorted lists, so
    that notes which quantization makes identical in time cannot be paired the wrong way round.
    """
    step = 1.0 / tok.config.beat_resolution  # quarters
    groups = _group(orig, lambda t, s: t / s.ticks_per_beat)
    back = _group(dec, lambda t, s: t / s.ticks_per_beat)
    assert groups.keys() == back.keys()
    for key in groups:
        a, b = groups[key], back[key]
        assert len(a) == len(b), key
        on_a = sorted((math.floor(s / step + 0.5), velocity_bin(tok, v)) for s, _, v in a)  # grid, half up
        on_b = sorted((round(s / step), velocity_bin(tok, v)) for s, _, v in b)
        assert on_a == on_b, key
        for e0, e1 in zip(sorted(max(e, s + step) for s, e, _ in a), sorted(e for _, e, _ in b)):
            assert abs(e0 - e1) <= step + 1e-9, key


def _perf_check(orig: Score, dec: Score, tok: PerformanceTokenizer) -> None:
    """Per instrument and pitch: onsets and offsets within one time step; velocities within their bin."""
    step = tok.config.time_shift_ms / 1000.0
    groups = _group(orig, lambda t, s: float(s.ticks_to_seconds([t])[0]))
    back = _group(dec, lambda t, s: float(s.ticks_to_seconds([t])[0]))
    assert groups.keys() == back.keys()
    for key in groups:
        a, b = groups[key], back[key]
        assert len(a) == len(b), key
        on_a = sorted((round(s / step), velocity_bin(tok, v)) for s, _, v in a)
        on_b = sorted((round(s / step), velocity_bin(tok, v)) for s, _, v in b)
        assert [abs(x[0] - y[0]) for x, y in zip(on_a, on_b)] == [0] * len(a)
        assert [x[1] for x in on_a] == [y[1] for y in on_b]
        # a note lasts at least one step: a zero-length note ends one step after its onset
        for e0, e1 in zip(sorted(max(e, s + step) for s, e, _ in a), sorted(e for _, e, _ in b)):
            assert abs(e0 - e1) <= step + 1e-6


def _group(score: Score, to_time) -> dict[tuple[int, bool, int], list[tuple[float, float, int]]]:
    g: dict[tuple[int, bool, int], list[tuple[float, float, int]]] = defaultdict(list)
    for inst in score.instruments:
        for n in inst.notes:
            g[(0 if inst.is_drum else inst.program, inst.is_drum, n.pitch)].append(
                (to_time(n.start, score), to_time(n.end, score), n.velocity)
            )
    return g


@pytest.mark.parametrize("name", sorted(SCORES))
def test_beat_round_trip(name):
    score = SCORES[name]()
    ids, stats = BEAT.encode(score)
    assert ids[0] == BEAT.bos_id and ids[-1] == BEAT.eos_id
    assert BEAT.note_count(ids) == score.note_count == stats.notes_encoded
    _beat_check(score, BEAT.decode(ids), BEAT)


@pytest.mark.parametrize("name", sorted(SCORES))
def test_performance_round_trip(name):
    score = SCORES[name]()
    ids, stats = PERF.encode(score)
    assert PERF.note_count(ids) == score.note_count == stats.notes_encoded
    _perf_check(score, PERF.decode(ids), PERF)


@pytest.mark.parametrize("encoding", ["beat", "performance"])
@pytest.mark.parametrize("name", sorted(SCORES))
def test_round_trip_through_midi_files(tmp_path, encoding, name):
    """MIDI file -> tokens -> MIDI file: what a user does with encode and decode."""
    tok = tokenizer_from_config(TokenizerConfig(encoding=encoding))
    write_midi(SCORES[name](), tmp_path / "in.mid")
    original = read_midi(tmp_path / "in.mid")
    write_midi(tok.decode(tok.encode(original)[0]), tmp_path / "out.mid")
    back = read_midi(tmp_path / "out.mid")
    (_beat_check if encoding == "beat" else _perf_check)(original, back, tok)  # type: ignore[operator]


def test_beat_keeps_tempo_and_time_signature_changes():
    score = SCORES["tempo_timesig_changes"]()
    dec = BEAT.decode(BEAT.encode(score)[0])
    assert [t.tick * TPQ // dec.ticks_per_beat for t in dec.tempos] == [0, 8 * TPQ, 14 * TPQ]
    # each tempo lands within half a bin (16 bins an octave) plus the label's rounding to whole bpm
    for t, want in zip(dec.tempos, (120.0, 90.0, 140.0)):
        assert abs(np.log2(t.qpm / want)) <= 1 / 32 + np.log2(1 + 0.5 / want)
    assert dec.tempos[0].qpm == 120.0
    sigs = dec.time_signatures
    assert [(t.tick * TPQ // dec.ticks_per_beat, t.numerator, t.denominator) for t in sigs] == [
        (0, 4, 4), (8 * TPQ, 3, 4), (14 * TPQ, 6, 8)
    ]  # fmt: skip


def test_what_cannot_be_kept_is_counted():
    tok = BeatTokenizer(TokenizerConfig(pitch_min=21, pitch_max=108))
    notes = [Note(10, 64, 0, 480), Note(60, 64, 0, 480), Note(120, 64, 0, 480)]
    score = Score(TPQ, [Instrument(0, False, "", notes)], [TempoChange(0, 500.0)], [TimeSignature(0, 17, 4)])
    ids, stats = tok.encode(score)
    assert stats.lost() == {"pitches_out_of_range": 2, "time_signatures_replaced": 1, "tempos_clamped": 1}
    assert tok.note_count(ids) == 1


def test_time_signature_off_the_bar_line_moves_to_the_next_bar_and_notes_stay_put():
    notes = [Note(60 + i, 64, i * TPQ, (i + 1) * TPQ) for i in range(12)]
    score = Score(TPQ, [Instrument(0, False, "", notes)], [TempoChange(0, 120.0)],
                  [TimeSignature(0, 4, 4), TimeSignature(6 * TPQ, 3, 4)])  # fmt: skip
    ids, stats = BEAT.encode(score)
    assert stats.lost() == {"time_signatures_moved": 1}
    _beat_check(score, BEAT.decode(ids), BEAT)


def test_decode_ignores_tokens_that_break_the_grammar():
    toks = [
        "BOS",
        "DURATION_12",
        "PITCH_60",
        "BAR",
        "POSITION_0",
        "PITCH_62",
        "DURATION_12",
        "EOS",
        "PITCH_70",
    ]
    dec = BEAT.decode(ids_of(BEAT, toks))
    assert [(n.pitch, n.start) for i in dec.instruments for n in i.notes] == [(62, 0)]


def test_text_parsing_names_line_of_unknown_token():
    with pytest.raises(TokenError, match=r"song.txt:3: unknown token 'PITCH_999' for the beat encoding"):
        BEAT.from_text("BOS\nBAR\nPITCH_999\n", source="song.txt")


@pytest.mark.parametrize("tok", [BEAT, PERF], ids=["beat", "performance"])
def test_token_file_round_trips_and_names_its_tokenizer(tok: Tokenizer):
    cfg = TokenizerConfig(encoding=tok.encoding, velocity_bins=8)
    narrow = tokenizer_from_config(cfg)
    ids, _ = narrow.encode(SCORES["multitrack_drums"]())
    text = narrow.to_text(ids)
    lines = text.split("\n")
    assert lines[0] == TOKEN_HEADER + json.dumps(cfg.to_dict(), separators=(",", ":"))
    assert lines[1:] == [*narrow.ids_to_tokens(ids), ""]  # one token a line, a final newline
    again = tokenizer_for_text(text)
    assert again.config == cfg
    assert again.from_text(text).tolist() == ids.tolist()
    # no header: the encoding must be said, and its default config is used
    body = "\n".join(lines[1:])
    assert tokenizer_for_text(body, tok.encoding).config == TokenizerConfig(encoding=tok.encoding)
    with pytest.raises(TokenError, match=r"^no composer-tokens header line; say which --encoding it uses$"):
        tokenizer_for_text(body)
    with pytest.raises(TokenError, match=r"^Expecting property name enclosed in double quotes"):
        tokenizer_for_text(TOKEN_HEADER + "{bad\n" + body)


def test_each_encoding_has_its_tokenizer_and_says_what_it_supports():
    assert tuple(TOKENIZERS) == ENCODINGS
    for name, cls in TOKENIZERS.items():
        tok = tokenizer_from_config(TokenizerConfig(encoding=name))
        assert type(tok) is cls and tok.encoding == name
    assert (BEAT.has_bars, BEAT.supports_time_stretch) == (True, False)
    assert (PERF.has_bars, PERF.supports_time_stretch) == (False, True)
    assert PERF.tempo_steering(90.0) is None
    steer = BEAT.tempo_steering(90.0)
    assert steer is not None
    tempo_ids = np.flatnonzero(BEAT.vocab.mask("TEMPO"))
    nearest = BEAT.vocab.offset("TEMPO") + BEAT.tempo_bin(90.0)
    assert [int(i) for i in tempo_ids if steer.allowed[i]] == [nearest]
    assert steer.allowed[~BEAT.vocab.mask("TEMPO")].all()
    assert steer.seconds_scale == pytest.approx(90.0 / BEAT.tempo_of_bin(BEAT.tempo_bin(90.0)))


# ---------------------------------------------------------------------------------------------- augmentation


def test_transpose_lut_moves_pitches_only_and_drum_context_is_found():
    ids = BEAT.encode(SCORES["multitrack_drums"]())[0].astype(np.int64)
    moved = BEAT.transpose_lut(2)[ids]
    drums = BEAT.drum_context(ids)
    kinds = [BEAT.vocab.decode_event(int(i))[0] for i in ids]
    for k, a, b in zip(kinds, ids, moved):
        if k == "PITCH":
            assert b == a + 2
        else:
            assert a == b
    pitches = [
        (BEAT.vocab.decode_event(int(i))[1], bool(d)) for i, k, d in zip(ids, kinds, drums) if k == "PITCH"
    ]
    assert {p for p, d in pitches if d} == {36, 38, 42}  # the drum notes, and only they
    assert {p for p, d in pitches if not d} == {36, 72, 73, 74}  # bass and piano


def test_velocity_and_time_stretch_luts():
    v0 = PERF.vocab.id("VELOCITY_0")
    assert PERF.velocity_lut(-1)[v0] == v0
    assert PERF.velocity_lut(3)[v0] == v0 + 3
    ts50 = PERF.vocab.id("TIME_SHIFT_50")
    assert PERF.time_stretch_lut(1.1)[ts50] == PERF.vocab.id("TIME_SHIFT_55")
    assert PERF.time_stretch_lut(2.0)[PERF.vocab.id("TIME_SHIFT_100")] == PERF.vocab.id("TIME_SHIFT_100")
    assert np.array_equal(BEAT.time_stretch_lut(1.1), np.arange(BEAT.vocab.size))


# ------------------------------------------------------------------------------------------ property tests

notes_strategy = st.lists(
    st.tuples(
        st.sampled_from([0, 5, 33, -1]),  # -1: drums
        st.integers(0, 127),
        st.integers(1, 127),
        st.integers(0, 40 * TPQ),
        st.integers(0, 12 * TPQ),
    ),
    min_size=1,
    max_size=60,
)


def _score_from(notes, tpq: int, tempos, sig) -> Score:
    by: dict[int, Instrument] = {}
    for prog, pitch, vel, start, dur in notes:
        inst = by.setdefault(prog, Instrument(max(prog, 0), prog < 0, "", []))
        inst.notes.append(Note(pitch, vel, start * tpq // TPQ, (start + dur) * tpq // TPQ))
    return Score(tpq, list(by.values()), [TempoChange(t * tpq // TPQ, q) for t, q in tempos],
                 [TimeSignature(0, *sig)])  # fmt: skip


tempo_strategy = st.lists(
    st.tuples(st.integers(0, 40 * TPQ), st.floats(30, 300)), min_size=1, max_size=4
).map(lambda ts: sorted({t: (t, q) for t, q in [(0, ts[0][1]), *ts[1:]]}.values()))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(notes=notes_strategy, tpq=st.sampled_from([96, 384, 480, 960]), tempos=tempo_strategy,
       sig=st.sampled_from([(4, 4), (3, 4), (6, 8), (7, 8), (2, 2)]))  # fmt: skip
def test_property_beat_round_trip(notes, tpq, tempos, sig):
    score = _score_from(notes, tpq, tempos, sig)
    ids, stats = BEAT.encode(score)
    assert not stats.lost().get("pitches_out_of_range")
    _beat_check(score, BEAT.decode(ids), BEAT)
    assert BEAT.encode(BEAT.decode(ids))[0].tolist() == ids.tolist()  # decoding is a fixed point


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(notes=notes_strategy, tpq=st.sampled_from([96, 384, 480, 960]), tempos=tempo_strategy)
def test_property_performance_round_trip(notes, tpq, tempos):
    score = _score_from(notes, tpq, tempos, (4, 4))
    ids, _ = PERF.encode(score)
    _perf_check(score, PERF.decode(ids), PERF)


def test_tempo_bins_are_found_on_the_geometric_grid_and_decode_to_their_labels():
    """Binning is unchanged (corpora stay valid); each bin's tempo is its label, what a decoded file has."""
    # 28.3 bpm lies between the grid's 27.51 and 28.73 (labels 28 and 29), nearer 28.73 on a log scale
    assert BEAT.vocab.token(BEAT.vocab.offset("TEMPO") + BEAT.tempo_bin(28.3)) == "TEMPO_29"
    assert BEAT.vocab.token(BEAT.vocab.offset("TEMPO") + BEAT.tempo_bin(28.0)) == "TEMPO_28"
    labels = [t.removeprefix("TEMPO_") for t in BEAT.vocab.tokens if t.startswith("TEMPO_")]
    assert BEAT.tempo_values.tolist() == [float(lab) for lab in labels]
    assert [BEAT.tempo_of_bin(b) for b in range(len(labels))] == BEAT.tempo_values.tolist()
    score = Score(TPQ, [Instrument(0, False, "", [Note(60, 64, 0, TPQ)])], [TempoChange(0, 28.3)])
    assert BEAT.decode(BEAT.encode(score)[0]).tempos == [TempoChange(0, 29.0)]
