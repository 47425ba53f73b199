"""composer.attributes: key estimation, key names, density, tempo, instrument sets and corpus levels."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.attributes import (
    DRUM_KIT,
    LEVELS,
    MAJOR_PROFILE,
    MAX_KEY_WEIGHT_QUARTERS,
    MINOR_PROFILE,
    MODES,
    Attributes,
    Key,
    attributes_of,
    estimate_key,
    instrument_set,
    key_from_profile,
    level_of,
    median_tempo,
    note_density,
    parse_key,
    pitch_class_profile,
    tercile_bounds,
)
from composer.errors import ConfigError
from composer.midi import Instrument, Note, Score, TempoChange
from composer.tokenizer import DRUMS
from tests.midi_factory import TPQ, chord_score, multitrack_score

MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11, 12)
HARMONIC_MINOR = (0, 2, 3, 5, 7, 8, 11, 12)
NATURAL_MINOR = (0, 2, 3, 5, 7, 8, 10, 12)
ALL_KEYS = [(tonic, mode) for mode in MODES for tonic in range(12)]


def score_of(
    notes: list[Note], *, drums: list[Note] | None = None, tempos: list[TempoChange] | None = None
) -> Score:
    instruments = [Instrument(0, False, "Piano", notes)]
    if drums:
        instruments.append(Instrument(0, True, "Drums", drums))
    return Score(TPQ, instruments, tempos or [])


def scale_score(tonic: int, steps: tuple[int, ...]) -> Score:
    """The scale up and down from a tonic near middle C, one quarter per note, the first and last tonic
    held for a half note."""
    seq = list(steps) + list(steps[-2::-1])
    notes, pos = [], 0
    for i, step in enumerate(seq):
        length = 2 * TPQ if i in (0, len(seq) - 1) else TPQ
        notes.append(Note(60 + tonic + step, 80, pos, pos + length))
        pos += length
    return score_of(notes)


def cadence_score(tonic: int, mode: str) -> Score:
    """I-IV-V-I (i-iv-V-i in minor, with the leading tone) as whole-note block chords."""
    third, sixth = (4, 9) if mode == "major" else (3, 8)
    chords = [(0, third, 7, 12), (5, sixth, 12, 17), (7, 11, 14, 19), (0, third, 7, 12)]
    notes = [
        Note(48 + tonic + p, 80, i * 4 * TPQ, (i + 1) * 4 * TPQ) for i, c in enumerate(chords) for p in c
    ]
    return score_of(notes)


def transposed(score: Score, k: int) -> Score:
    """The score with every pitched note moved k semitones; drums stay."""
    return Score(
        score.ticks_per_beat,
        [
            Instrument(
                i.program,
                i.is_drum,
                i.name,
                [n if i.is_drum else Note(n.pitch + k, n.velocity, n.start, n.end) for n in i.notes],
            )
            for i in score.instruments
        ],
        list(score.tempos),
        list(score.time_signatures),
    )


# ------------------------------------------------------------------------------------------------- keys


@pytest.mark.parametrize(("tonic", "mode"), ALL_KEYS)
def test_scales_are_in_their_key(tonic: int, mode: str) -> None:
    scales = [MAJOR_SCALE] if mode == "major" else [HARMONIC_MINOR, NATURAL_MINOR]
    for steps in scales:
        key = estimate_key(scale_score(tonic, steps))
        assert key == Key(tonic, mode), (steps, key)
        assert key is not None and key.correlation is not None and 0.5 < key.correlation <= 1


@pytest.mark.parametrize(("tonic", "mode"), ALL_KEYS)
def test_cadences_are_in_their_key(tonic: int, mode: str) -> None:
    assert estimate_key(cadence_score(tonic, mode)) == Key(tonic, mode)


def test_known_keys_by_name() -> None:
    assert str(estimate_key(scale_score(2, HARMONIC_MINOR))) == "D minor"
    assert str(estimate_key(cadence_score(10, "major"))) == "Bb major"
    assert str(estimate_key(cadence_score(6, "major"))) == "F# major"
    assert str(estimate_key(chord_score())) == "C major"  # the fixture: C major arpeggios over a low C


def test_the_profile_is_duration_weighted() -> None:
    # a C held four beats and a C# held one: the C counts four times as much
    s = score_of([Note(60, 80, 0, 4 * TPQ), Note(61, 80, 4 * TPQ, 5 * TPQ), Note(72, 80, 0, 2 * TPQ)])
    assert list(pitch_class_profile(s)) == [6.0, 1.0] + [0.0] * 10
    # duration decides between two readings of the same four pitch classes: A, C and E held long make
    # A minor, C, E and G held long make C major
    notes = [(57, 0), (60, 1), (64, 2), (67, 3)]
    heavy_a = score_of(
        [Note(p, 80, i * TPQ, (i + 1) * TPQ + (6 * TPQ if p in (57, 60, 64) else 0)) for p, i in notes]
    )
    heavy_c = score_of(
        [Note(p, 80, i * TPQ, (i + 1) * TPQ + (6 * TPQ if p in (60, 64, 67) else 0)) for p, i in notes]
    )
    assert estimate_key(heavy_a) == parse_key("A minor")
    assert estimate_key(heavy_c) == parse_key("C major")


def test_a_stuck_note_weighs_no_more_than_a_long_held_one() -> None:
    # an F# never released (it sounds to the end of its track, 2,000 quarters later) beside a D major
    # cadence played four times: held in full it would outweigh the music; capped, the cadence decides
    cadence = cadence_score(2, "major").instruments[0].notes
    music = [
        Note(n.pitch, n.velocity, n.start + k * 16 * TPQ, n.end + k * 16 * TPQ)
        for k in range(4)
        for n in cadence
    ]
    stuck = Note(66 - 12, 80, 0, 2000 * TPQ)
    s = score_of(music + [stuck])
    assert pitch_class_profile(s)[6] == 4 * 8 + MAX_KEY_WEIGHT_QUARTERS  # eight whole-note F#s, and the cap
    assert estimate_key(s) == parse_key("D major")
    # what the cap changes: without it the F# alone would decide
    uncapped = pitch_class_profile(s)
    uncapped[6] += 2000 - MAX_KEY_WEIGHT_QUARTERS
    assert key_from_profile(uncapped) != parse_key("D major")


def test_drums_are_left_out() -> None:
    s = cadence_score(2, "minor")
    # a busy drum part on pitches whose pitch classes (C#, D#, F#, G#) would pull any key elsewhere
    drums = [Note(p, 100, i * TPQ // 2, i * TPQ // 2 + 60) for i, p in enumerate([37, 39, 42, 44] * 8)]
    with_drums = Score(TPQ, [*s.instruments, Instrument(0, True, "Drums", drums)])
    assert list(pitch_class_profile(with_drums)) == list(pitch_class_profile(s))
    assert estimate_key(with_drums) == estimate_key(s) == parse_key("D minor")
    only_drums = Score(TPQ, [Instrument(0, True, "Drums", drums)])
    assert estimate_key(only_drums) is None


def test_no_key_without_pitched_music() -> None:
    assert estimate_key(Score(TPQ, [])) is None
    assert estimate_key(score_of([])) is None
    assert estimate_key(score_of([Note(60, 80, 0, 0), Note(64, 80, 0, 0)])) is None  # zero-length only


def test_no_key_where_no_key_stands_out() -> None:
    chromatic = score_of([Note(60 + i, 80, i * TPQ, (i + 1) * TPQ) for i in range(12)])
    assert estimate_key(chromatic) is None  # a flat profile
    whole_tone = score_of([Note(60 + 2 * i, 80, i * TPQ, (i + 1) * TPQ) for i in range(6)])
    assert estimate_key(whole_tone) is None  # C, D, E, ... tie exactly: the profile repeats every 2
    tritone = score_of([Note(60, 80, 0, TPQ), Note(66, 80, TPQ, 2 * TPQ)])
    assert estimate_key(tritone) is None


def test_key_from_profile_checks_its_input() -> None:
    for bad in ([1.0] * 11, [1.0] * 11 + [-1.0], [1.0] * 11 + [math.nan]):
        with pytest.raises(ConfigError, match="12 finite non-negative"):
            key_from_profile(bad)
    # the key profiles themselves are recognised as their keys, and rotated as the key moves
    assert key_from_profile(MAJOR_PROFILE) == Key(0, "major")
    assert key_from_profile(MINOR_PROFILE) == Key(0, "minor")
    assert key_from_profile(MINOR_PROFILE[-4:] + MINOR_PROFILE[:-4]) == Key(4, "minor")
    assert key_from_profile(MAJOR_PROFILE).correlation == 1.0  # type: ignore[union-attr]


def test_profiles_are_music21s_krumhansl_kessler() -> None:
    discrete = pytest.importorskip("music21.analysis.discrete")
    ks = discrete.KrumhanslSchmuckler()
    assert tuple(ks.getWeights("major")) == MAJOR_PROFILE
    assert tuple(ks.getWeights("minor")) == MINOR_PROFILE


notes_strategy = st.lists(
    st.tuples(st.integers(24, 100), st.integers(0, 40), st.integers(0, 12)),  # pitch, start, length (8ths)
    min_size=0,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(notes=notes_strategy, k=st.integers(-24, 24), drums=st.booleans())
def test_transposing_moves_the_tonic_by_as_much(
    notes: list[tuple[int, int, int]], k: int, drums: bool
) -> None:
    eighth = TPQ // 2
    s = score_of(
        [Note(p, 80, a * eighth, (a + n) * eighth) for p, a, n in notes],
        drums=[Note(36 + i % 5, 100, i * eighth, i * eighth + 10) for i in range(8)] if drums else None,
    )
    before, after = estimate_key(s), estimate_key(transposed(s, k))
    if before is None:
        assert after is None
        return
    assert after == before.transposed(k) and after is not None
    assert after.mode == before.mode and after.tonic == (before.tonic + k) % 12
    assert after.correlation == before.correlation  # the same arithmetic, not just close


# ------------------------------------------------------------------------------------------- key names


@pytest.mark.parametrize(
    ("text", "tonic", "mode"),
    [
        ("D minor", 2, "minor"),
        ("Dm", 2, "minor"),
        ("dm", 2, "minor"),
        ("F# major", 6, "major"),
        ("f#", 6, "major"),
        ("Bb", 10, "major"),
        ("bb", 10, "major"),
        ("B", 11, "major"),
        ("bm", 11, "minor"),
        ("Bbm", 10, "minor"),
        ("B flat minor", 10, "minor"),
        ("c sharp minor", 1, "minor"),
        ("C#min", 1, "minor"),
        ("Ebmaj", 3, "major"),
        ("E♭ major", 3, "major"),
        ("  G  ", 7, "major"),
        ("A-minor", 9, "minor"),
        ("Cb major", 11, "major"),
        ("E# minor", 5, "minor"),
    ],
)
def test_parse_key(text: str, tonic: int, mode: str) -> None:
    key = parse_key(text)
    assert (key.tonic, key.mode, key.correlation) == (tonic, mode, None)


@pytest.mark.parametrize(
    "text", ["", "H major", "D dorian", "Dmm", "D# # major", "major", "12", "D minor key"]
)
def test_parse_key_refuses_with_one_line_naming_the_value(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_key(text)
    msg = str(info.value)
    assert repr(text) in msg and "A-G" in msg and "major or minor" in msg and "\n" not in msg


@pytest.mark.parametrize(("tonic", "mode"), ALL_KEYS)
def test_key_names_read_back(tonic: int, mode: str) -> None:
    key = Key(tonic, mode)
    assert parse_key(str(key)) == key
    assert str(key) == key.name and key.name.endswith(f" {mode}")


def test_key_names_and_transposition() -> None:
    assert [str(Key(t, "major")) for t in (1, 3, 6, 8, 10)] == [
        "Db major",
        "Eb major",
        "F# major",
        "Ab major",
        "Bb major",
    ]
    assert [str(Key(t, "minor")) for t in (1, 3, 6, 8, 10)] == [
        "C# minor",
        "Eb minor",
        "F# minor",
        "G# minor",
        "Bb minor",
    ]
    assert Key(11, "minor").transposed(3) == Key(2, "minor")
    assert Key(2, "major").transposed(-3) == Key(11, "major")
    assert Key(2, "major", 0.8) == Key(2, "major")  # keys compare by tonic and mode


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tonic": 12, "mode": "major"}, "0..11"),
        ({"tonic": -1, "mode": "major"}, "0..11"),
        ({"tonic": True, "mode": "major"}, "0..11"),
        ({"tonic": 2.0, "mode": "major"}, "0..11"),
        ({"tonic": 2, "mode": "dorian"}, "major, minor"),
        ({"tonic": 2, "mode": "minor", "correlation": 1.5}, "-1..1"),
    ],
)
def test_key_is_validated(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Key(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ density and tempo


def test_note_density_is_notes_per_quarter_note() -> None:
    eight_eighths = score_of([Note(60, 80, i * TPQ // 2, (i + 1) * TPQ // 2) for i in range(8)])
    assert note_density(eight_eighths) == 2.0  # 8 notes over 4 quarters
    assert note_density(chord_score(bars=4)) == 20 / 16  # 5 notes a 4/4 bar
    # drum hits count: the multitrack fixture has 8 bass, 24 piano, 24 drum notes over 2 bars
    assert note_density(multitrack_score()) == 56 / 8
    # tempo does not change density
    fast = score_of(eight_eighths.instruments[0].notes, tempos=[TempoChange(0, 200.0)])
    assert note_density(fast) == note_density(eight_eighths)
    assert note_density(Score(TPQ, [])) == 0.0
    assert note_density(score_of([Note(60, 80, 0, 10)])) == 1.0  # at least a quarter note long


def test_median_tempo_weighs_each_tempo_by_the_beats_it_holds() -> None:
    notes = [Note(60, 80, 0, 16 * TPQ)]
    assert median_tempo(score_of(notes)) == 120.0  # no tempo: the reader's default
    assert median_tempo(score_of(notes, tempos=[TempoChange(0, 90.0)])) == 90.0
    # 12 beats at 100, then a ritardando of 4 one-beat changes: 100 holds most of the piece
    rit = [TempoChange(0, 100.0)] + [TempoChange((12 + i) * TPQ, 90.0 - 10 * i) for i in range(4)]
    assert median_tempo(score_of(notes, tempos=rit)) == 100.0
    # 4 beats at 80, 12 at 140: 140
    assert median_tempo(score_of(notes, tempos=[TempoChange(0, 80.0), TempoChange(4 * TPQ, 140.0)])) == 140.0
    # before the first change the tempo is 120
    assert median_tempo(score_of(notes, tempos=[TempoChange(12 * TPQ, 60.0)])) == 120.0
    # of several changes at one tick the last is in force; changes after the last note do not count
    same_tick = [TempoChange(0, 70.0), TempoChange(0, 75.0), TempoChange(20 * TPQ, 200.0)]
    assert median_tempo(score_of(notes, tempos=same_tick)) == 75.0
    assert median_tempo(score_of([], tempos=[TempoChange(0, 66.0)])) == 66.0  # a piece of no length


def test_instrument_set() -> None:
    assert DRUM_KIT == DRUMS
    assert instrument_set(multitrack_score()) == (0, 33, DRUM_KIT)
    assert instrument_set(chord_score(program=40)) == (40,)
    silent = Score(TPQ, [Instrument(5, False, "", []), *chord_score().instruments])
    assert instrument_set(silent) == (0,)  # an instrument without notes plays nothing


def test_attributes_round_trip_and_validation() -> None:
    a = attributes_of(cadence_score(9, "minor"))
    assert a.key == parse_key("A minor") and a.tempo == 120.0 and a.density == 16 / 16
    back = Attributes.from_dict(a.to_dict())
    assert back == a and back.key is not None and a.key is not None
    assert back.key.correlation == a.key.correlation
    none = Attributes(None, 0.0, 120.0)
    assert Attributes.from_dict(none.to_dict()) == none
    bads: list[object] = [
        {"density": 1.0},
        {"key": "H major", "density": 1.0, "tempo": 120.0},
        [],
        {"key": None, "density": "x", "tempo": 1},
    ]
    for bad in bads:
        with pytest.raises(ConfigError):
            Attributes.from_dict(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tempo"):
        Attributes(None, 1.0, 0.0)
    with pytest.raises(ConfigError, match="density"):
        Attributes(None, math.inf, 120.0)


# ------------------------------------------------------------------------------------------------ levels


def test_terciles_split_a_corpus_in_three() -> None:
    values = [float(v) for v in range(1, 10)]
    bounds = tercile_bounds(values)
    assert bounds is not None
    assert [level_of(v, bounds) for v in values] == ["low"] * 3 + ["mid"] * 3 + ["high"] * 3
    assert tercile_bounds([]) is None
    # all alike: all mid, not all low
    same = tercile_bounds([120.0] * 7)
    assert same == (120.0, 120.0) and level_of(120.0, same) == "mid"
    # many alike and a few apart
    tied = [90.0, 120.0, 120.0, 120.0, 120.0, 120.0, 160.0]
    tb = tercile_bounds(tied)
    assert tb is not None and [level_of(v, tb) for v in tied] == ["low"] + ["mid"] * 5 + ["high"]
    assert set(LEVELS) == {"low", "mid", "high"}
