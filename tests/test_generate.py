"""Generation, saving, plotting and rendering: valid by construction, reproducible, clear errors.

A tiny untrained LSTM (32 units) stands in for a trained model: what is tested here is the machinery
(masks, state carrying, lengths, primers, files), which does not depend on how well the model learned.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pretty_midi
import pytest
import torch
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.checkpoint import META_FILE, MODEL_FILE, load_checkpoint, write_checkpoint
from composer.cli import main
from composer.errors import ComposerError, ConfigError, MidiReadError
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, read_midi, write_midi
from composer.model import LSTMModel, ModelConfig
from composer.musicstats import degenerate_warnings
from composer.sample import CLOSE_BUDGET, Length, Stepper, generate, sample_ids
from composer.songs import GeneratedSong, save_songs, songs_from_sample
from composer.tokenizer import Tokenizer, TokenizerConfig, tokenizer_from_config

torch.set_num_threads(1)

PROGRAMS = (0, 32, 128)  # piano, bass, drums: what the fake corpus held


def make_checkpoint(
    path: Path, encoding: str = "beat", programs: tuple[int, ...] | None = PROGRAMS, seed: int = 0
) -> Path:
    tok = tokenizer_from_config(TokenizerConfig(encoding=encoding))
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tok.vocab.size, embed_dim=32, hidden_size=32, num_layers=2, dropout=0.0)
    model = LSTMModel(cfg)
    corpus: dict[str, Any] = {"path": "corpora/none", "fingerprint": "0" * 16}
    if programs is not None:
        corpus["programs"] = list(programs)
    meta = {
        "model_config": cfg.to_dict(),
        "tokenizer_config": tok.config.to_dict(),
        "vocab": list(tok.vocab.tokens),
        "step": 0,
        "corpus": corpus,
    }
    return write_checkpoint(path, model.state_dict(), {}, meta)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("gen-ckpt")
    return {
        "beat": make_checkpoint(tmp / "beat"),
        "performance": make_checkpoint(tmp / "perf", "performance"),
        "no_programs": make_checkpoint(tmp / "noprog", programs=None),
    }


def primer_score(program: int = 0, bars: int = 2) -> Score:
    """A grid-aligned primer at 120 bpm in 4/4: quarter notes rising, a held bass note per bar."""
    tpb = 480
    lead = Instrument(program=program, name="lead")
    bass = Instrument(program=32, name="bass")
    for b in range(bars):
        for k in range(4):
            t = (b * 4 + k) * tpb
            lead.notes.append(Note(60 + 2 * k + b, 80, t, t + tpb))
        bass.notes.append(Note(40 + b, 70, b * 4 * tpb, (b + 1) * 4 * tpb))
    return Score(
        ticks_per_beat=tpb,
        instruments=[lead, bass],
        tempos=[TempoChange(0, 120.0)],
        time_signatures=[TimeSignature(0, 4, 4)],
    )


def note_set(score: Score) -> list[tuple[int, float, float]]:
    out = []
    for inst in score.instruments:
        s = score.ticks_to_seconds(np.array([n.start for n in inst.notes], dtype=np.int64))
        e = score.ticks_to_seconds(np.array([n.end for n in inst.notes], dtype=np.int64))
        out += [(n.pitch, float(a), float(b)) for n, a, b in zip(inst.notes, s, e)]
    return out


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


def all_notes_closed(score: Score) -> bool:
    return all(n.end > n.start for inst in score.instruments for n in inst.notes)


# ------------------------------------------------------------------------------------------- end to end


def test_cli_writes_n_valid_files_a_daw_opens(ckpts: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "songs"
    r = run("generate", ckpts["beat"], "-o", out, "-n", "3", "--bars", "4", "--seed", "3", "--plot")
    assert r.exit_code == 0, r.output
    mids = sorted(out.glob("song_*.mid"))
    assert [p.name for p in mids] == ["song_001.mid", "song_002.mid", "song_003.mid"]
    for mid in mids:
        pm = pretty_midi.PrettyMIDI(str(mid))
        notes = [n for inst in pm.instruments for n in inst.notes]
        assert notes and all(n.end > n.start for n in notes)
        mf = mido.MidiFile(str(mid))
        assert mf.type == 1
        metas = [m.type for m in mf.tracks[0]]
        assert "set_tempo" in metas and "time_signature" in metas
        side = json.loads(mid.with_suffix(".json").read_text())
        assert side["file"] == mid.name and side["seed"] == 3
        assert side["options"]["bars"] == 4 and side["checkpoint"] == str(ckpts["beat"])
        assert side["notes"] == sum(len(i.notes) for i in pm.instruments)
        assert side["bars"] == 4 and isinstance(side["warnings"], list)
        assert mid.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "seed 3" in r.output


def test_same_seed_gives_byte_identical_files_and_other_seeds_differ(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    outs = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        r = run("generate", ckpts["beat"], "-o", tmp_path / name, "-n", "2", "--bars", "3", "--seed", seed)
        assert r.exit_code == 0, r.output
        outs.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert outs[0] == outs[1]
    assert outs[0]["song_001.mid"] != outs[2]["song_001.mid"]
    assert outs[0]["song_001.mid"] != outs[0]["song_002.mid"]  # rows of a batch differ too


def test_force_is_checked_before_generating(
    ckpts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "songs"
    assert (
        run("generate", ckpts["beat"], "-o", out, "-n", "2", "--tokens", "20", "--seed", "1").exit_code == 0
    )
    before = (out / "song_002.mid").read_bytes()

    def boom(*a: Any, **k: Any) -> None:
        raise AssertionError("generated although the files exist")

    monkeypatch.setattr("composer.sample.generate", boom)
    err = one_line_error(
        run("generate", ckpts["beat"], "-o", out, "-n", "2", "--tokens", "20", "--seed", "2")
    )
    assert "song_001.mid exists" in err and "--force" in err
    assert (out / "song_002.mid").read_bytes() == before
    monkeypatch.undo()
    r = run("generate", ckpts["beat"], "-o", out, "-n", "2", "--tokens", "20", "--seed", "2", "--force")
    assert r.exit_code == 0, r.output
    assert (out / "song_002.mid").read_bytes() != before


# ------------------------------------------------------------------------------------------------ lengths


def test_bars_length(ckpts: dict[str, Path]) -> None:
    ck = load_checkpoint(ckpts["beat"])
    songs = generate(ck, 3, length=Length(bars=5), seed=2)
    tok = ck.tokenizer
    bar_id = tok.vocab.id("BAR")
    for s in songs:
        assert s.bars == 5
        assert int(np.sum(s.ids == bar_id)) == 5
        assert s.ids[-1] == tok.eos_id


def test_seconds_length_ends_cleanly_on_the_bar_after(ckpts: dict[str, Path]) -> None:
    ck = load_checkpoint(ckpts["beat"])
    songs = generate(ck, 3, length=Length(seconds=6.0), seed=4, bpm=120.0)
    for s in songs:
        # at 120 bpm a bar is at most 4 s (8 quarters): the piece stops on the first bar line past 6 s
        assert s.score.tempos == [TempoChange(0, 120.0)]
        assert s.seconds <= 6.0 + 4.0 + 4.0  # + a bar + the longest note
        assert s.notes > 0 and all_notes_closed(s.score)


def test_seconds_length_performance(ckpts: dict[str, Path]) -> None:
    ck = load_checkpoint(ckpts["performance"])
    raw = sample_ids(
        ck.model, ck.tokenizer, 2, Length(seconds=2.0), generator=torch.Generator().manual_seed(1)
    )
    assert (raw.seconds >= 2.0).all()
    for ids in raw.ids:
        assert ids[-1] == ck.tokenizer.eos_id
        assert all_notes_closed(ck.tokenizer.decode(ids))


def test_tokens_length(ckpts: dict[str, Path]) -> None:
    ck = load_checkpoint(ckpts["beat"])
    raw = sample_ids(ck.model, ck.tokenizer, 3, Length(tokens=40), generator=torch.Generator().manual_seed(0))
    for ids in raw.ids:
        generated = len(ids) - 1  # after BOS, EOS included
        assert 40 <= generated <= 40 + CLOSE_BUDGET + 50  # the bar in progress is finished
        assert ids[-1] == ck.tokenizer.eos_id
    assert not raw.hit_cap.any()


def test_length_validation() -> None:
    assert Length().seconds == 30.0
    for bad in ({"seconds": 0}, {"seconds": -1.0}, {"seconds": 1e9}, {"bars": 0}, {"tokens": 0},
                {"bars": 10**7}, {"seconds": 3.0, "bars": 2}, {"seconds": float("nan")}):  # fmt: skip
        with pytest.raises(ConfigError):
            Length(**bad)


def test_progress_is_reported(ckpts: dict[str, Path]) -> None:
    ck = load_checkpoint(ckpts["beat"])
    calls: list[tuple[float, float]] = []
    generate(ck, 1, length=Length(bars=2), seed=0, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1] == (2.0, 2.0)
    assert all(0 <= d <= t for d, t in calls)


# ------------------------------------------------------------------------------------------------- primer


@pytest.mark.parametrize("encoding", ["beat", "performance"])
def test_primer_notes_are_kept_then_continued(ckpts: dict[str, Path], tmp_path: Path, encoding: str) -> None:
    primer = tmp_path / "primer.mid"
    write_midi(primer_score(), primer)
    ck = load_checkpoint(ckpts[encoding])
    songs = generate(ck, 2, length=Length(tokens=30), seed=9, primer=primer)
    tol = 0.5 / 12 * 0.5 + 1e-6 if encoding == "beat" else 0.006  # half a grid step at 120 bpm / 10 ms
    want = note_set(primer_score())
    for s in songs:
        got = note_set(s.score)
        for p, a, b in want:
            assert any(q == p and abs(a - x) <= tol and abs(b - y) <= tol for q, x, y in got), (p, a, b)
        assert s.notes > len(want)  # and it went on
        assert s.primer_notes == len(want)
        assert all_notes_closed(s.score)


def test_primer_errors(ckpts: dict[str, Path], tmp_path: Path) -> None:
    junk = tmp_path / "notes.mid"
    junk.write_text("this is not a MIDI file")
    err = one_line_error(run("generate", ckpts["beat"], "-o", tmp_path / "o1", "--primer", junk))
    assert str(junk) in err and "MIDI" in err

    violin = tmp_path / "violin.mid"
    write_midi(primer_score(program=40), violin)
    err = one_line_error(run("generate", ckpts["beat"], "-o", tmp_path / "o2", "--primer", violin))
    assert "never saw" in err and "Violin (program 40)" in err

    # a checkpoint that does not record its corpus's instruments: generated, with a note saying so
    r = run("generate", ckpts["no_programs"], "-o", tmp_path / "o3", "-n", "1", "--tokens", "5",
            "--primer", violin)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "primer not checked" in r.output


# -------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_give_one_line_errors(ckpts: dict[str, Path], tmp_path: Path) -> None:
    ck = ckpts["beat"]
    out = tmp_path / "out"
    cases = {
        ("--seconds", "0"): "--seconds",
        ("--seconds", "100000"): "--seconds",
        ("--bars", "0"): "--bars",
        ("--tokens", "-3"): "--tokens",
        ("--bars", "2", "--tokens", "5"): "one length",
        ("--temperature", "0"): "--temperature",
        ("--temperature", "-1"): "--temperature",
        ("--top-p", "0"): "--top-p",
        ("--top-p", "1.5"): "--top-p",
        ("--top-k", "0"): "--top-k",
        ("--bpm", "5"): "--bpm",
    }
    for args, what in cases.items():
        err = one_line_error(run("generate", ck, "-o", out, *args))
        assert what in err, (args, err)

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    err = one_line_error(run("generate", ck, "-o", a_file / "sub", "--tokens", "5"))
    assert str(a_file) in err
    err = one_line_error(run("generate", ck, "-o", a_file, "--tokens", "5"))
    assert str(a_file) in err

    # a truncated checkpoint, one from another format version, none at all
    bad = tmp_path / "trunc"
    shutil.copytree(ck, bad)
    data = (bad / MODEL_FILE).read_bytes()
    (bad / MODEL_FILE).write_bytes(data[: len(data) // 2])
    err = one_line_error(run("generate", bad, "-o", out, "--tokens", "5"))
    assert "truncated" in err or "damaged" in err
    other = tmp_path / "other"
    shutil.copytree(ck, other)
    meta = json.loads((other / META_FILE).read_text())
    meta["format_version"] = 99
    (other / META_FILE).write_text(json.dumps(meta))
    assert "version" in one_line_error(run("generate", other, "-o", out, "--tokens", "5"))
    assert "no such checkpoint" in one_line_error(run("generate", tmp_path / "nope", "-o", out))
    err = one_line_error(run("generate", ckpts["performance"], "-o", out, "--bars", "4"))
    assert "--bars" in err and "beat encoding" in err


def test_missing_default_checkpoint_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    err = one_line_error(run("generate", "-o", "songs"))
    assert "checkpoints/bach" in err and "train" in err


def test_library_errors(ckpts: dict[str, Path], tmp_path: Path) -> None:
    ck = load_checkpoint(ckpts["beat"])
    with pytest.raises(ConfigError):
        generate(ck, 1, length=Length(tokens=5), temperature=0.0)
    with pytest.raises(ConfigError):
        generate(ck, 0, length=Length(tokens=5))
    with pytest.raises(MidiReadError, match="primer"):
        generate(ck, 1, length=Length(tokens=5), primer=tmp_path / "missing.mid")
    songs = generate(ck, 1, length=Length(tokens=5), seed=1)
    save_songs(songs, tmp_path / "s")
    with pytest.raises(ComposerError, match="exists"):
        save_songs(songs, tmp_path / "s")
    save_songs(songs, tmp_path / "s", force=True)


# ----------------------------------------------------------------------------- sampling is valid, always


class RandomLogits(torch.nn.Module):
    """Any logits at all: seeded noise times a scale, plus a fixed bias (a stand-in for any model)."""

    def __init__(self, vocab: int, seed: int, scale: float, bias_seed: int) -> None:
        super().__init__()
        self.vocab, self.scale = vocab, scale
        self.gen = torch.Generator().manual_seed(seed)
        self.bias = torch.randn(vocab, generator=torch.Generator().manual_seed(bias_seed)) * 3

    def forward(self, tokens: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        b, t = tokens.shape
        z = torch.zeros(1, b, 1)
        return torch.randn(b, t, self.vocab, generator=self.gen) * self.scale + self.bias, (z, z)


TOKENIZERS: dict[str, Tokenizer] = {
    e: tokenizer_from_config(TokenizerConfig(encoding=e)) for e in ("beat", "performance")
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    encoding=st.sampled_from(["beat", "beat", "performance"]),
    seed=st.integers(0, 2**31),
    scale=st.sampled_from([0.1, 1.0, 5.0, 30.0]),
    length=st.one_of(
        st.builds(Length, tokens=st.integers(1, 120)),
        st.builds(Length, bars=st.integers(1, 3)),
        st.builds(Length, seconds=st.floats(0.1, 6.0)),
    ),
    temperature=st.sampled_from([0.3, 1.0, 2.5]),
    top_k=st.sampled_from([None, 1, 5]),
    top_p=st.sampled_from([None, 0.5, 1.0]),
)
def test_any_logits_sample_valid_music_that_reencodes_exactly(
    encoding: str,
    seed: int,
    scale: float,
    length: Length,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
) -> None:
    tok = TOKENIZERS[encoding]
    model = RandomLogits(tok.vocab.size, seed, scale, seed + 1)
    raw = sample_ids(
        model, tok, 2, length, temperature=temperature, top_k=top_k, top_p=top_p,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    for ids in raw.ids:
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert int(np.sum(ids == tok.eos_id)) == 1 and tok.pad_id not in ids
        score = tok.decode(ids)
        assert all_notes_closed(score)
        if encoding == "beat":
            again, _ = tok.encode(score)
            assert again.tolist() == ids.tolist()


def test_one_token_steps_match_the_model_forward(ckpts: dict[str, Path]) -> None:
    model = load_checkpoint(ckpts["beat"]).model
    ids = torch.randint(0, model.config.vocab_size, (3, 25), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full, _ = model(ids)
        stepper = Stepper(model)
        assert stepper.fast
        last, state = stepper.prime(ids[0, :1], 3)
        torch.testing.assert_close(last[0], full[0, 0])
        steps = []
        state = model.init_state(3)
        for t in range(ids.shape[1]):
            lg, state = stepper(ids[:, t], state)
            steps.append(lg)
    torch.testing.assert_close(torch.stack(steps, 1), full, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------- bpm, warnings


def test_bpm_beat_sets_one_tempo_and_performance_keeps_seconds(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    ck = load_checkpoint(ckpts["beat"])
    (song,) = generate(ck, 1, length=Length(bars=2), seed=1, bpm=90.0)
    save_songs([song], tmp_path / "b")
    mf = mido.MidiFile(str(tmp_path / "b" / "song_001.mid"))
    tempos = [m.tempo for m in mf.tracks[0] if m.type == "set_tempo"]
    assert tempos == [mido.bpm2tempo(90.0)]
    tempo_tokens = [t for t in ck.tokenizer.ids_to_tokens(song.ids) if t.startswith("TEMPO_")]
    nearest = ck.tokenizer.vocab.tokens[ck.tokenizer.vocab.offset("TEMPO") + ck.tokenizer.tempo_bin(90.0)]
    assert set(tempo_tokens) == {nearest}  # the model was steered to the nearest tempo bin

    perf = load_checkpoint(ckpts["performance"])
    (plain,) = generate(perf, 1, length=Length(tokens=40), seed=3)
    (slow,) = generate(perf, 1, length=Length(tokens=40), seed=3, bpm=45.0)
    assert slow.score.tempos == [TempoChange(0, 45.0)]
    a, b = sorted(note_set(plain.score)), sorted(note_set(slow.score))
    assert len(a) == len(b)
    for (p, s0, e0), (q, s1, e1) in zip(a, b):
        assert p == q and abs(s0 - s1) < 1e-3 and abs(e0 - e1) < 1e-3


def test_retime_on_a_performance_score_keeps_times() -> None:
    s = Score(ticks_per_beat=500, tempos=[TempoChange(0, 120.0)], time_signatures=[TimeSignature(0, 4, 4)])
    s.instruments = [Instrument(0, notes=[Note(60, 80, 1000, 1500), Note(62, 80, 1500, 1510)])]
    before = note_set(s)
    after = note_set(TOKENIZERS["performance"].retime(s, 200.0))
    assert np.allclose(np.array(before), np.array(after), atol=1e-3)


def _score(notes: list[tuple[int, float, float]], drum: bool = False) -> Score:
    tpb = 480  # at 120 bpm one second is 960 ticks
    inst = Instrument(0, is_drum=drum, notes=[Note(p, 80, int(a * 960), int(b * 960)) for p, a, b in notes])
    return Score(ticks_per_beat=tpb, instruments=[inst], tempos=[TempoChange(0, 120.0)])


def test_degenerate_output_is_flagged() -> None:
    fine = _score([(60 + (i % 7), i * 0.5, i * 0.5 + 0.4) for i in range(40)])
    assert degenerate_warnings(fine) == []
    gap = _score(
        [(60, 0, 1), (62, 1, 2), (64, 12, 13)]
        + [(60 + i % 5, 13 + i * 0.3, 13.2 + i * 0.3) for i in range(20)]
    )
    assert any("silence of 10.0 s at 2.0 s" in w for w in degenerate_warnings(gap))
    same = _score([(60, i * 0.5, i * 0.5 + 0.4) for i in range(30)])
    assert any("pitch 60" in w for w in degenerate_warnings(same))
    drums = _score([(36, i * 0.5, i * 0.5 + 0.1) for i in range(30)], drum=True)
    assert not any("repeated" in w for w in degenerate_warnings(drums))  # a steady kick drum is music
    sparse = _score([(60, 0, 1), (62, 5, 6), (64, 7.5, 8)])
    assert any("fewer notes" in w for w in degenerate_warnings(sparse, expected_notes_per_second=4.0))
    assert degenerate_warnings(Score()) == ["no notes at all"]


def test_warnings_reach_the_sidecar(tmp_path: Path) -> None:
    score = _score([(60, i * 0.5, i * 0.5 + 0.4) for i in range(30)])
    song = GeneratedSong(
        1, np.zeros(3, np.uint16), score, 30, 15.0, None, 3, warnings=degenerate_warnings(score)
    )
    save_songs([song], tmp_path, meta={"seed": 1})
    side = json.loads((tmp_path / "song_001.json").read_text())
    assert side["warnings"] and side["seed"] == 1


def test_a_cut_song_says_so_in_its_result_and_sidecar(ckpts: dict[str, Path], tmp_path: Path) -> None:
    ck = load_checkpoint(ckpts["beat"])
    gen = torch.Generator().manual_seed(0)
    raw = sample_ids(ck.model, ck.tokenizer, 3, Length(tokens=40), generator=gen, close_budget=0)
    assert raw.forced.any() and not raw.hit_cap.any()  # no budget: a row still in its bar is closed by force
    songs = songs_from_sample(raw, ck.tokenizer)
    assert [s.cut for s in songs] == raw.cut.tolist() == raw.forced.tolist()
    for s in songs:
        assert any("closed by force" in w for w in s.warnings) == s.cut
    save_songs(songs, tmp_path)
    sides = [json.loads((tmp_path / f"song_{s.index:03d}.json").read_text()) for s in songs]
    assert [side["cut"] for side in sides] == [s.cut for s in songs]


# ------------------------------------------------------------------------------------------------- render


def test_render_without_a_synth_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mid = tmp_path / "a.mid"
    write_midi(primer_score(), mid)
    monkeypatch.setattr("shutil.which", lambda name: None)
    err = one_line_error(run("render", mid, "-o", tmp_path / "a.wav"))
    assert "apt-get install fluidsynth fluid-soundfont-gm" in err and "timidity" in err
    assert not (tmp_path / "a.wav").exists()

    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/fluidsynth" if name == "fluidsynth" else None)
    monkeypatch.setattr("composer.render.find_soundfont", lambda: None)
    err = one_line_error(run("render", mid, "-o", tmp_path / "a.wav"))
    assert "soundfont" in err and "--soundfont" in err
    assert "no such file" in one_line_error(run("render", mid, "--soundfont", tmp_path / "none.sf2"))


def test_render_refuses_non_midi_and_existing_output(tmp_path: Path) -> None:
    txt = tmp_path / "x.mid"
    txt.write_text("hello")
    assert "MIDI" in one_line_error(run("render", txt))
    mid = tmp_path / "a.mid"
    write_midi(primer_score(), mid)
    (tmp_path / "a.wav").write_bytes(b"old")
    assert "exists" in one_line_error(run("render", mid))


def test_render_for_real_when_a_synth_is_installed(tmp_path: Path) -> None:
    from composer.render import find_soundfont

    if not ((shutil.which("fluidsynth") and find_soundfont()) or shutil.which("timidity")):
        pytest.skip("no FluidSynth + soundfont or TiMidity installed")
    mid = tmp_path / "a.mid"
    write_midi(primer_score(bars=1), mid)
    r = run("render", mid)
    assert r.exit_code == 0, r.output
    wav = (tmp_path / "a.wav").read_bytes()
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE" and len(wav) > 44_100


def test_plot_writes_a_png(tmp_path: Path) -> None:
    from composer.plot import plot_piano_roll

    p = plot_piano_roll(primer_score(), tmp_path / "roll.png", title="t")
    assert p.read_bytes()[:4] == b"\x89PNG"
    plot_piano_roll(Score(), tmp_path / "empty.png")  # an empty score still draws


def test_generated_file_reads_back_with_our_reader(ckpts: dict[str, Path], tmp_path: Path) -> None:
    ck = load_checkpoint(ckpts["beat"])
    songs = generate(ck, 1, length=Length(bars=2), seed=8)
    (path,) = save_songs(songs, tmp_path)
    back = read_midi(path)
    assert back.note_count == songs[0].notes
