"""``composer accompany``: the song's tracks come back note for note, the added instruments play around
them, bar for bar with the song's tempo and time signatures; clear errors for what cannot be done.

An untrained model (near-uniform logits) stands in for a trained one: it tries every choice the masks
leave open, which is what tests the constraint.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from composer.accompany import accompany, kept_notes
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
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1, r.output
    return lines[0]


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
