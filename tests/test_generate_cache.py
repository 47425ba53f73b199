"""Generation with the neural cache, songs' form in the sidecar and the picture, the loop warning.

The cache tests use a model whose state is the last few tokens (embeddings and input weights scaled up,
forget gates shut): what training gives a real model, where equal contexts give near-equal hidden states.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from composer.cache import CacheConfig
from composer.checkpoint import Checkpoint, load_checkpoint, save_cache
from composer.errors import ConfigError
from composer.form import bar_repeats
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, read_midi, write_midi
from composer.musicstats import degenerate_warnings
from composer.sample import CachedStepper, Length, generate, sample_ids
from composer.songs import encode_primer, save_songs, songs_from_sample
from tests.test_generate import make_checkpoint, one_line_error, run

torch.set_num_threads(1)

STRONG = CacheConfig(theta=50.0, lam=0.99, size=2048)
MOTIF = [(0.0, 60, 1.0), (1.0, 67, 0.5), (1.5, 64, 0.5), (2.0, 72, 2.0)]  # (beat, pitch, beats)


def motif_score(bars: int = 8) -> Score:
    """One bar played ``bars`` times."""
    tpb = 480
    lead = Instrument(program=0, name="lead")
    for b in range(bars):
        for on, pitch, dur in MOTIF:
            t = int((b * 4 + on) * tpb)
            lead.notes.append(Note(pitch, 80, t, t + int(dur * tpb)))
    return Score(
        ticks_per_beat=tpb,
        instruments=[lead],
        tempos=[TempoChange(0, 120.0)],
        time_signatures=[TimeSignature(0, 4, 4)],
    )


def context_model(ck: Checkpoint) -> Checkpoint:
    """Make ``ck``'s model one whose hidden state is a function of the last few tokens."""
    m = ck.model
    h = m.config.hidden_size
    with torch.no_grad():
        m.embed.weight.normal_(0.0, 3.0, generator=torch.Generator().manual_seed(0))
        for k in range(m.config.num_layers):
            getattr(m.lstm, f"bias_ih_l{k}")[h : 2 * h] = -10.0
            getattr(m.lstm, f"weight_ih_l{k}").mul_(4.0)
    return ck


@pytest.fixture(scope="module")
def beat_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("cache-ckpt") / "beat")


@pytest.fixture(scope="module")
def primer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cache-primer") / "motif.mid"
    write_midi(motif_score(), path)
    return path


def copied_share(row: np.ndarray, primer_ids: np.ndarray, k: int = 12) -> float:
    """Share of the tokens after the primer that end a k-gram the primer contains."""
    p, r = primer_ids.tolist(), row.tolist()
    grams = {tuple(p[i : i + k]) for i in range(len(p) - k + 1)}
    ends = range(len(p), len(r))
    return sum(tuple(r[i - k + 1 : i + 1]) in grams for i in ends) / max(len(ends), 1)


# ------------------------------------------------------------------------------------------- sampling


def test_a_cache_with_lambda_zero_samples_the_plain_songs(beat_ckpt: Path, primer: Path) -> None:
    """Forced on with lam = 0, the cached path (step_hidden + project, the bank) draws the same tokens."""
    ck = context_model(load_checkpoint(beat_ckpt))
    ids, _ = encode_primer(primer, ck.tokenizer)
    off = CacheConfig(theta=1.0, lam=0.0, size=64)
    for kw in ({}, {"temperature": 0.8, "top_k": 40, "top_p": 0.9}):
        runs = [
            sample_ids(
                ck.model,
                ck.tokenizer,
                3,
                Length(tokens=120),
                generator=torch.Generator().manual_seed(4),
                primer_ids=ids,
                cache=cache,
                **kw,  # type: ignore[arg-type]
            )
            for cache in (None, off)
        ]
        assert [r.tolist() for r in runs[0].ids] == [r.tolist() for r in runs[1].ids]
    plain = generate(ck, 2, length=Length(bars=4), seed=3, cache=False)
    zero = generate(ck, 2, length=Length(bars=4), seed=3, cache=off)
    assert [s.ids.tolist() for s in plain] == [s.ids.tolist() for s in zero]
    assert [s.stats()["cache"] for s in zero] == [{"used": True, **off.to_dict()}] * 2
    assert plain[0].stats()["cache"] == {"used": False}


def test_a_strong_cache_copies_a_repeating_primer(beat_ckpt: Path, primer: Path) -> None:
    ck = context_model(load_checkpoint(beat_ckpt))
    ids, _ = encode_primer(primer, ck.tokenizer)
    shares = {}
    for name, cache in (("plain", None), ("cache", STRONG)):
        raw = sample_ids(
            ck.model,
            ck.tokenizer,
            4,
            Length(tokens=200),
            generator=torch.Generator().manual_seed(1),
            primer_ids=ids,
            cache=cache,
        )
        shares[name] = [copied_share(r, ids) for r in raw.ids]
        assert raw.cache == cache
    assert np.mean(shares["plain"]) < 0.05, shares
    assert np.mean(shares["cache"]) > 0.4, shares


def test_each_song_of_a_batch_keeps_its_own_cache(beat_ckpt: Path, primer: Path) -> None:
    """Two rows fed different tokens give what each gives alone in a batch of one."""
    ck = context_model(load_checkpoint(beat_ckpt))
    model, vocab = ck.model, ck.tokenizer.vocab.size
    ids, _ = encode_primer(primer, ck.tokenizer)
    prefix = torch.as_tensor(ids, dtype=torch.long)
    streams = torch.stack(
        [
            torch.as_tensor(np.tile(ids[1:40], 2)[:60], dtype=torch.long),  # the primer again
            torch.randint(0, vocab, (60,), generator=torch.Generator().manual_seed(2)),  # noise
        ]
    )
    cpu = torch.device("cpu")

    def run_rows(rows: torch.Tensor) -> torch.Tensor:
        stepper = CachedStepper(model, STRONG, rows.shape[0], cpu)
        with torch.inference_mode():
            last, state = stepper.prime(prefix, rows.shape[0])
            out = [last]
            for t in range(rows.shape[1]):
                stepper.push(rows[:, t])
                last, state = stepper(rows[:, t], state)
                out.append(last)
        return torch.stack(out, 1)  # (B, steps, V)

    both = run_rows(streams)
    for r in range(2):
        alone = run_rows(streams[r : r + 1])
        torch.testing.assert_close(both[r], alone[0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(both[0], both[1], atol=1e-2)  # the two caches hold different pasts


def test_cache_default_flags_and_errors(beat_ckpt: Path, tmp_path: Path) -> None:
    """Default: on where the checkpoint has a fitted cache; --cache without one says how to fit one."""
    err = one_line_error(run("generate", beat_ckpt, "-o", tmp_path / "a", "--tokens", "20", "--cache"))
    assert "no fitted neural cache" in err and f"composer fit-cache {beat_ckpt}" in err
    assert not (tmp_path / "a" / "song_001.mid").exists()
    with pytest.raises(ConfigError, match="fit-cache"):
        generate(load_checkpoint(beat_ckpt), 1, length=Length(tokens=20), cache=True)

    fitted = make_checkpoint(tmp_path / "fitted")
    save_cache(fitted, STRONG, {"nll_model": 2.0, "nll_cache": 1.0, "targets": 100})
    sides = {}
    for name, flag in (("default", []), ("on", ["--cache"]), ("off", ["--no-cache"])):
        out = tmp_path / name
        r = run("generate", fitted, "-o", out, "-n", "2", "--bars", "4", "--seed", "5", *flag)
        assert r.exit_code == 0, r.output
        sides[name] = json.loads((out / "song_001.json").read_text())
        sides[name]["mid"] = (out / "song_001.mid").read_bytes()
    assert sides["default"]["cache"] == sides["on"]["cache"] == {"used": True, **STRONG.to_dict()}
    assert sides["off"]["cache"] == {"used": False}
    assert sides["default"]["mid"] == sides["on"]["mid"] != sides["off"]["mid"]
    assert sides["on"]["options"]["cache"] is True and sides["default"]["options"]["cache"] is None


def test_the_cache_refuses_a_batch_too_big_for_memory(beat_ckpt: Path) -> None:
    ck = load_checkpoint(beat_ckpt)
    big = CacheConfig(theta=1.0, lam=0.5, size=65536)
    with pytest.raises(ConfigError, match="generate fewer songs"):
        sample_ids(ck.model, ck.tokenizer, 1024, Length(tokens=5), cache=big)


# ------------------------------------------------------------------------------------- form of songs


def test_a_loop_is_flagged_and_a_song_with_form_is_not() -> None:
    loop = degenerate_warnings(motif_score(10))
    assert any(w.startswith("a loop:") and "(10 bars in a row)" in w for w in loop), loop
    a = motif_score(4)
    b = Score(ticks_per_beat=480, tempos=[TempoChange(0, 120.0)], time_signatures=[TimeSignature(0, 4, 4)])
    inst = Instrument(program=0)
    for bar in range(12):  # A B A C A D ...: one bar comes back, but the song is not one or two bars
        pitches = MOTIF if bar % 2 == 0 else [(on, p + bar, d) for on, p, d in MOTIF]
        for on, p, d in pitches:
            t = int((bar * 4 + on) * 480)
            inst.notes.append(Note(p, 80, t, t + int(d * 480)))
    b.instruments = [inst]
    assert not any(w.startswith("a loop") for w in degenerate_warnings(b))
    assert not any(w.startswith("a loop") for w in degenerate_warnings(a))  # too short to tell


def test_sidecar_carries_the_repeated_bar_shares(beat_ckpt: Path, tmp_path: Path) -> None:
    ck = load_checkpoint(beat_ckpt)
    tok = ck.tokenizer
    ids, _ = tok.encode(motif_score(10))
    raw = sample_ids(ck.model, tok, 1, Length(tokens=5), generator=torch.Generator().manual_seed(0))
    raw.ids = [np.asarray(ids, dtype=np.uint16)]  # a song that is the motif ten times over
    (song,) = songs_from_sample(raw, tok)
    save_songs([song], tmp_path)
    side = json.loads((tmp_path / "song_001.json").read_text())
    want = bar_repeats(read_midi(tmp_path / "song_001.mid"))
    assert side["repeated_bars"] == {
        "exact": round(want.exact or 0, 4),
        "transposed": round(want.transposed or 0, 4),
    }
    assert side["repeated_bars"]["exact"] == 0.6  # bars 5..10 repeat bar 1 at a lag of at least 4
    assert any(w.startswith("a loop:") for w in side["warnings"])


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plot_puts_the_bar_similarity_beside_the_roll(beat_ckpt: Path, tmp_path: Path) -> None:
    from composer.plot import plot_piano_roll, plot_song

    song = plot_song(motif_score(8), tmp_path / "song.png", title="s")
    roll = plot_piano_roll(motif_score(8), tmp_path / "roll.png", title="s")
    (w, h), (rw, rh) = _png_size(song), _png_size(roll)
    assert h == rh and w > rw  # one picture per song, the matrix to the right of the roll
    assert _png_size(plot_song(Score(), tmp_path / "empty.png")) == (rw, rh)  # no bars: the roll alone
    r = run(
        "generate", beat_ckpt, "-o", tmp_path / "songs", "--bars", "4", "--seed", "1", "--plot", "-n", "1"
    )
    assert r.exit_code == 0, r.output
    assert _png_size(tmp_path / "songs" / "song_001.png")[0] == w
    assert sorted(p.name for p in (tmp_path / "songs").iterdir()) == [
        "song_001.json",
        "song_001.mid",
        "song_001.png",
    ]
