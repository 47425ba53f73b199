"""``composer accompany``: the song's tracks come back note for note, the added instruments play around
them, bar for bar with the song's tempo and time signatures; clear errors for what cannot be done.

An untrained model (near-uniform logits) stands in for a trained one: it tries every choice the masks
leave open, which is what tests the constraint.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from composer.accompany import accompany, infill, kept_notes
from composer.cli import main
from composer.errors import ComposerError, ConfigError, MidiReadError
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, read_midi, write_midi
from composer.tokenizer import TokenizerConfig, tokenizer_from_config
from composer.tokenizer.beat_keep import kept_events
from tests.midi_factory import changes_score, chord_score, edge_score, multitrack_score, overlap_score
from tests.test_generate import make_checkpoint

MELODIES = {  # name: (score, instruments to add)
    "chords": (chord_score, (32, 128)),
    "tempo_and_metre_changes": (changes_score, (32,)),
    "multitrack_kept": (multitrack_score, (32,)),
    "overlapping_same_pitch": (overlap_score, (128,)),
    "edge_values_long_note": (edge_score, (0, 32)),
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("acc") / "beat")


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def programs_of(score: Score) -> set[int]:
    return {128 if i.is_drum else i.program for i in score.instruments if i.notes}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", MELODIES)
def test_kept_parts_come_back_note_for_note_and_added_ones_play(
    ckpt: Path, tmp_path: Path, name: str, seed: int
) -> None:
    make, add = MELODIES[name]
    song = tmp_path / "song.mid"
    write_midi(make(), song)
    tok = tokenizer_from_config(TokenizerConfig(encoding="beat"))
    ids, _ = tok.encode(read_midi(song))
    alone = tok.decode(ids)  # the song as the model's grid has it
    songs, kept = accompany(ckpt, song, add, n=2, seed=seed)
    keep = programs_of(alone)
    assert kept == sum(kept_notes(alone, keep).values()) > 0
    bars = kept_events(tok.vocab, ids)[1]
    for s in songs:
        assert kept_notes(s.score, keep) == kept_notes(alone, keep)
        assert programs_of(s.score) == keep | set(add)  # every added instrument plays, nothing else
        assert s.bars == bars
        assert s.score.tempos == alone.tempos
        assert s.score.time_signatures == alone.time_signatures
        again, _ = tok.encode(s.score)  # a valid piece: it re-encodes to itself
        assert np.array_equal(again, s.ids)


def test_kept_events_golden() -> None:
    tok = tokenizer_from_config(TokenizerConfig(encoding="beat"))
    v = tok.vocab
    ids = [
        v.encode_event(*e)
        for e in [
            ("BOS",), ("BAR",), ("TIME_SIGNATURE", tok.time_signatures.index((4, 4))), ("POSITION", 0),
            ("TEMPO", 5), ("PROGRAM", 0), ("VELOCITY", 3), ("PITCH", 60), ("DURATION", 12),
            ("POSITION", 12), ("PITCH", 62), ("DURATION", 6), ("BAR",), ("POSITION", 0), ("PITCH", 64),
            ("DURATION", 24), ("EOS",),
        ]
    ]  # fmt: skip
    events, bars = kept_events(v, np.array(ids))
    assert bars == 2
    got = [(e.bar, e.pos, e.kind, e.program, e.velocity, [v.token(t) for t in e.tokens]) for e in events]
    assert [g[:3] for g in got] == [
        (1, -1, "TIME_SIGNATURE"), (1, 0, "TEMPO"), (1, 0, "NOTE"), (1, 12, "NOTE"), (2, 0, "NOTE"),
    ]  # fmt: skip
    assert got[3][3:] == (0, 3, ["PITCH_62", "DURATION_6"])


def test_same_seed_same_songs_and_the_cli_writes_them(ckpt: Path, tmp_path: Path) -> None:
    song = tmp_path / "melody.mid"
    write_midi(chord_score(bars=2), song)
    outs = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        r = run("accompany", song, ckpt, "--add", "acoustic-bass,drums", "-o", out, "-n", "2", "--seed", "5")
        assert r.exit_code == 0, r.output
        assert "kept 10 notes of melody.mid" in r.output
        outs.append(out)
    for name in ("song_001.mid", "song_002.mid"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes()
    side = json.loads((outs[0] / "song_001.json").read_text())
    assert side["options"]["add"] == [32, 128] and side["kept_notes"] == 10 and side["bars"] == 2
    r = run("accompany", song, ckpt, "--add", "drums", "-o", outs[0])
    assert r.exit_code == 1 and "exists (use --force" in r.output


def one_line(r: Result) -> str:
    assert r.exit_code != 0 and "Traceback" not in r.output, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, r.output
    return errors[0]


def test_bad_inputs_give_one_line(ckpt: Path, tmp_path: Path) -> None:
    song = tmp_path / "melody.mid"
    write_midi(chord_score(bars=1), song)
    o = tmp_path / "o"
    assert "already plays Acoustic Grand Piano" in one_line(
        run("accompany", song, ckpt, "--add", "piano", "-o", o)
    )
    assert "never heard Violin" in one_line(run("accompany", song, ckpt, "--add", "violin", "-o", o))
    assert "unknown instrument 'kazoo'" in one_line(run("accompany", song, ckpt, "--add", "kazoo", "-o", o))
    assert "--add needs at least one" in one_line(run("accompany", song, ckpt, "--add", ",", "-o", o))
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd nonsense")
    assert "bad.mid" in one_line(run("accompany", bad, ckpt, "--add", "drums", "-o", o))
    empty = tmp_path / "empty.mid"
    write_midi(
        Score(480, [Instrument(0, False, "p", [])], [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)]), empty
    )
    assert "no notes" in one_line(run("accompany", empty, ckpt, "--add", "drums", "-o", o))
    perf = make_checkpoint(tmp_path / "perf", "performance")
    assert "needs a model with the beat encoding" in one_line(
        run("accompany", song, perf, "--add", "drums", "-o", o)
    )
    assert not o.exists()


def test_library_errors(ckpt: Path, tmp_path: Path) -> None:
    song = tmp_path / "m.mid"
    write_midi(chord_score(bars=1), song)
    with pytest.raises(ConfigError, match="--add needs"):
        accompany(ckpt, song, [])
    with pytest.raises(ConfigError, match="number of songs"):
        accompany(ckpt, song, [32], n=0)
    with pytest.raises(MidiReadError, match="no such file|m2.mid"):
        accompany(ckpt, tmp_path / "m2.mid", [32])
    assert issubclass(MidiReadError, ComposerError)


def test_a_long_kept_note_is_not_lengthened_and_others_may_not_join_it(ckpt: Path, tmp_path: Path) -> None:
    """A kept note longer than the longest DURATION chains DURATIONs; the model may not add another."""
    tok = tokenizer_from_config(TokenizerConfig(encoding="beat"))
    q = tok.config.max_duration_quarters
    notes = [Note(50, 80, 0, (q + 3) * 480), Note(70, 80, 480, 2 * 480)]
    score = Score(480, [Instrument(0, False, "p", notes)], [TempoChange(0, 100.0)], [TimeSignature(0, 4, 4)])
    song = tmp_path / "long.mid"
    write_midi(score, song)
    songs, _ = accompany(ckpt, song, [32], n=4, seed=3)
    for s in songs:
        piano = sorted(
            (n.pitch, n.start, n.end) for i in s.score.instruments if i.program == 0 for n in i.notes
        )
        scale = s.score.ticks_per_beat / 480
        assert piano == [(50, 0, round((q + 3) * 480 * scale)), (70, round(480 * scale), round(960 * scale))]


# ------------------------------------------------------------------------------------------------ infill


def bar_of(score: Score, tick: int) -> int:
    """1-based bar of a tick in a 4/4 score."""
    return tick // (4 * score.ticks_per_beat) + 1


def notes_by_bar(score: Score, bars: tuple[int, int], programs: set[int] | None, inside: bool) -> Counter:
    out: Counter = Counter()
    scale = 480 / score.ticks_per_beat
    for inst in score.instruments:
        p = 128 if inst.is_drum else inst.program
        for n in inst.notes:
            b = bar_of(score, n.start)
            in_range = bars[0] <= b <= bars[1] and (programs is None or p in programs)
            if in_range == inside:
                out[(p, n.pitch, round(n.start * scale), round(n.end * scale), n.velocity)] += 1
    return out


def two_track_song(bars: int = 8) -> Score:
    """Piano arpeggios and a bass note per bar, 4/4 at 120."""
    score = chord_score(bars=bars)
    bass = Instrument(
        32, False, "Bass", [Note(36 + b % 5, 90, b * 1920, b * 1920 + 960) for b in range(bars)]
    )
    score.instruments.append(bass)
    return score


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    ("bars", "tracks"), [((3, 4), None), ((1, 2), None), ((7, 8), None), ((3, 5), (32,)), ((2, 2), (0,))]
)
def test_infill_keeps_everything_outside_the_range_and_writes_inside(
    ckpt: Path, tmp_path: Path, bars: tuple[int, int], tracks: tuple[int, ...] | None, seed: int
) -> None:
    song = tmp_path / "song.mid"
    write_midi(two_track_song(), song)
    tok = tokenizer_from_config(TokenizerConfig(encoding="beat"))
    alone = tok.decode(tok.encode(read_midi(song))[0])
    free = None if tracks is None else set(tracks)
    res = infill(ckpt, song, bars, n=2, tracks=tracks, tries=3, seed=seed)
    assert len(res.songs) == 2 and [s.index for s in res.songs] == [1, 2]
    for s in res.songs:
        assert s.bars == 8
        assert s.score.tempos == alone.tempos and s.score.time_signatures == alone.time_signatures
        # outside the range (and, with --tracks, the other instruments inside it too): note for note
        assert notes_by_bar(s.score, bars, free, inside=False) == notes_by_bar(
            alone, bars, free, inside=False
        )
        # only the song's own instruments
        assert programs_of(s.score) <= {0, 32}
        again, _ = tok.encode(s.score)
        assert np.array_equal(again, s.ids)
    ends_at_last_bar = bars[1] == 8
    assert (res.after_nats == []) == ends_at_last_bar
    if not ends_at_last_bar:
        assert res.after_nats == sorted(res.after_nats)  # best first
        assert len(res.candidates_nats) == 6 and min(res.candidates_nats) == res.after_nats[0]


def test_infill_writes_new_music_in_the_range(ckpt: Path, tmp_path: Path) -> None:
    song = tmp_path / "song.mid"
    write_midi(two_track_song(), song)
    tok = tokenizer_from_config(TokenizerConfig(encoding="beat"))
    alone = tok.decode(tok.encode(read_midi(song))[0])
    res = infill(ckpt, song, (3, 6), n=4, tries=1, seed=0)
    inside = [notes_by_bar(s.score, (3, 6), None, inside=True) for s in res.songs]
    assert all(x != notes_by_bar(alone, (3, 6), None, inside=True) for x in inside)
    assert len({tuple(sorted(x.items())) for x in inside}) > 1  # the songs differ from each other


def test_infill_cli_and_errors(ckpt: Path, tmp_path: Path) -> None:
    song = tmp_path / "song.mid"
    write_midi(two_track_song(), song)
    out = tmp_path / "fills"
    r = run("infill", song, ckpt, "--bars", "3-4", "-o", out, "-n", "2", "--tries", "2", "--seed", "1")
    assert r.exit_code == 0, r.output
    assert "fit to the bars after 4:" in r.output and "4 candidates" in r.output
    side = json.loads((out / "song_001.json").read_text())
    assert side["options"]["bars"] == [3, 4] and side["after_range_nats_per_token"] > 0
    o = tmp_path / "o"
    assert "has 8 bars" in one_line(run("infill", song, ckpt, "--bars", "7-9", "-o", o))
    assert "not a bar range" in one_line(run("infill", song, ckpt, "--bars", "three", "-o", o))
    assert "first bar >= 1" in one_line(run("infill", song, ckpt, "--bars", "4-2", "-o", o))
    assert "does not play drums" in one_line(
        run("infill", song, ckpt, "--bars", "2", "--tracks", "drums", "-o", o)
    )
    assert "--tries" in one_line(run("infill", song, ckpt, "--bars", "2", "--tries", "0", "-o", o))
    perf = make_checkpoint(tmp_path / "perf", "performance")
    assert "beat encoding" in one_line(run("infill", song, perf, "--bars", "2", "-o", o))
    assert not o.exists()
