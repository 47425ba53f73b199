"""Evaluation: likelihood streaming, per-note figures, long-range gain, baselines, and the CLI command."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from composer.baselines import NGramModel, UnigramModel
from composer.cache import CacheConfig, window_nlls
from composer.checkpoint import save_cache
from composer.cli import main
from composer.evaluate import Likelihood, cached_piece_nlls, likelihood_of, note_counts
from composer.longrange import long_range, reset_nlls
from composer.midi import Instrument, Note, Score, TempoChange, TimeSignature, write_midi
from composer.model import LSTMModel, ModelConfig
from composer.nll import piece_nlls
from composer.tokenizer import TokenizerConfig, tokenizer_from_config
from composer.train import train
from tests.helpers_train import build_tiny_corpus, make_midi_files, tiny_config
from tests.midi_factory import TPQ

torch.set_num_threads(1)


def _next_token_nll(model: torch.nn.Module, windows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The reference: NLL of ``targets[r]`` right after ``windows[r]`` through the model's forward."""
    with torch.inference_mode():
        logits, _ = model(torch.as_tensor(windows, dtype=torch.long), None)
        lp = torch.log_softmax(logits[:, -1].float(), dim=-1)
        return (-lp.gather(1, torch.as_tensor(targets, dtype=torch.long)[:, None])[:, 0]).double().numpy()


def _model(vocab: int, seed: int = 0, hidden: int = 32, layers: int = 2) -> LSTMModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        vocab, embed_dim=32, hidden_size=hidden, num_layers=layers, dropout=0.0, tie_weights=False
    )
    return LSTMModel(cfg).eval()


def _melody_score(pitches: list[int]) -> Score:
    notes = [Note(p, 80, i * TPQ // 2, (i + 1) * TPQ // 2) for i, p in enumerate(pitches)]
    return Score(
        TPQ, [Instrument(0, False, "lead", notes)], [TempoChange(0, 120.0)], [TimeSignature(0, 4, 4)]
    )


# ------------------------------------------------------------------------------------------ likelihood


def test_streaming_carries_the_state_across_chunks_and_pieces() -> None:
    model = _model(50)
    rng = np.random.default_rng(0)
    pieces = [np.concatenate([[1], rng.integers(3, 50, n), [2]]) for n in (40, 7, 25)]
    whole = piece_nlls(model, pieces, chunk=1000, batch_pieces=1)
    chunked = piece_nlls(model, pieces, chunk=5, batch_pieces=3)  # padded side by side, 5 tokens a time
    for p, a, b in zip(pieces, whole, chunked):
        assert a.shape == b.shape == (len(p) - 1,)  # tokens 1..n-1: BOS is context, not a target
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # token t from a fresh state over the whole prefix is the streamed value
    p = pieces[0]
    for t in (1, 9, 30, len(p) - 1):
        np.testing.assert_allclose(
            _next_token_nll(model, p[None, :t], p[t : t + 1]), whole[0][t - 1 : t], rtol=1e-5
        )


def test_nats_per_note_is_nats_per_token_times_tokens_over_notes() -> None:
    tok = tokenizer_from_config(TokenizerConfig())
    ids = tok.encode(_melody_score([60, 62, 64, 65, 67, 65, 64, 62] * 2))[0].astype(np.int64)
    model = _model(tok.vocab.size)
    nlls = piece_nlls(model, [ids, ids[:30]])
    notes = note_counts(tok, [ids, ids[:30]])
    lk = likelihood_of(nlls, notes)
    assert lk.tokens == len(ids) - 1 + 29 and lk.notes == 16 + tok.note_count(ids[1:30])
    assert lk.nats_per_note == pytest.approx(lk.nats_per_token * lk.tokens / lk.notes, rel=1e-12)
    assert lk.perplexity == pytest.approx(np.exp(lk.nats_per_token))
    assert np.isnan(Likelihood.from_totals(3.0, 2, 0).nats_per_note)


def test_a_memorised_piece_scores_far_better_than_its_notes_shuffled() -> None:
    tok = tokenizer_from_config(TokenizerConfig())
    rnd = random.Random(3)
    pitches = [rnd.randrange(55, 80) for _ in range(24)]
    ids = tok.encode(_melody_score(pitches))[0].astype(np.int64)
    shuffled_pitches = list(pitches)
    random.Random(4).shuffle(shuffled_pitches)
    shuffled = tok.encode(_melody_score(shuffled_pitches))[0].astype(np.int64)
    assert tok.note_count(shuffled) == tok.note_count(ids) == 24

    model = _model(tok.vocab.size, hidden=64, layers=1).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    x = torch.from_numpy(ids[None, :-1])
    y = torch.from_numpy(ids[None, 1:])
    for _ in range(250):
        logits, _ = model(x, None)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    own = likelihood_of(piece_nlls(model, [ids]), note_counts(tok, [ids]))
    other = likelihood_of(piece_nlls(model, [shuffled]), note_counts(tok, [shuffled]))
    assert own.nats_per_note < 0.2 * other.nats_per_note
    assert own.nats_per_token < 0.3


# ----------------------------------------------------------------------------------------- long range


def test_long_range_gain_is_exactly_zero_under_identical_conditions() -> None:
    model = _model(40, seed=1)
    rng = np.random.default_rng(1)
    pieces = [np.concatenate([[1], rng.integers(3, 40, n), [2]]) for n in (60, 90)]
    full = piece_nlls(model, pieces)
    # a reset so far back that it reaches the piece's start is the full history: gain exactly 0
    lr = long_range(model, pieces, full, distances=(500, 10_000), min_position=1)
    for b in lr.buckets:
        assert b.targets > 0
        assert b.gain == 0.0 and b.nll_full == b.nll_reset
    # a real cut: measured on the same targets, with genuinely different values
    lr = long_range(model, pieces, full, distances=(4, 16, 64), min_position=64, targets_per_piece=8)
    assert [b.distance for b in lr.buckets] == [4, 16, 64]
    assert all(b.targets == lr.buckets[0].targets > 0 for b in lr.buckets)
    assert len({b.nll_full for b in lr.buckets}) == 1
    assert lr.buckets[0].gain != 0.0
    # the cut windows are what they say: ids[t-d:t] from a zero state
    p, t, d = pieces[1], np.array([70, 80]), 16
    got, none = reset_nlls(model, p, t, d, full[1])
    assert none is None
    want = _next_token_nll(model, np.stack([p[70 - d : 70], p[80 - d : 80]]), p[t])
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_long_range_skips_pieces_too_short() -> None:
    model = _model(20)
    pieces = [np.array([1, 5, 6, 2])]
    lr = long_range(model, pieces, piece_nlls(model, pieces), distances=(64,))
    assert lr.eligible_pieces == 0 and lr.buckets[0].targets == 0 and np.isnan(lr.buckets[0].gain)


# ------------------------------------------------------------------------------------------ baselines


def test_ngram_beats_unigram_on_a_repetitive_sequence() -> None:
    V = 12
    seq = np.array([1] + [3, 4, 5, 6, 7] * 40 + [2])
    train_seqs, test_seqs = [seq, seq[:80]], [seq[:120]]
    uni = UnigramModel(V).fit(train_seqs)
    tri = NGramModel(V, 3).fit(train_seqs)
    u = uni.token_nll(test_seqs[0]).mean()
    n = tri.token_nll_many(test_seqs).mean()
    assert n < 0.2 * u
    assert NGramModel(V, 5).fit(train_seqs).token_nll_many(test_seqs).mean() <= n + 1e-9


def test_ngram_probabilities_sum_to_one() -> None:
    V = 9
    rng = np.random.default_rng(2)
    train_seqs = [np.concatenate([[1], rng.integers(3, 8, 50), [2]]) for _ in range(5)]
    model = NGramModel(V, 4).fit(train_seqs)
    for ctx in (train_seqs[0][:1], train_seqs[0][:7], np.array([1, 8, 8, 8])):  # seen and unseen contexts
        p = [np.exp(-model.token_nll(np.concatenate([ctx, [w]]))[-1]) for w in range(V)]
        assert sum(p) == pytest.approx(1.0, abs=1e-9)
        assert min(p) > 0


# ----------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A tiny trained run: (corpus, run folder, tmp folder)."""
    tmp = tmp_path_factory.mktemp("evaluate")
    corpus = build_tiny_corpus(tmp, n=6)
    train(corpus, tmp / "run", tiny_config(max_steps=3, eval_every=3), progress=False, plot=False)
    return corpus, tmp / "run", tmp


def test_evaluate_prints_the_table_and_writes_every_figure(run: tuple[Path, Path, Path]) -> None:
    corpus, run_dir, tmp = run
    out, png = tmp / "eval.json", tmp / "eval.png"
    res = CliRunner().invoke(
        main,
        [
            "evaluate", str(run_dir), str(corpus), "--json", str(out), "--plot", str(png),
            "--samples", "2", "--distances", "8,16", "--targets", "64", "--order", "3", "--device", "cpu",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    for text in ("nats/token", "nats/note", "3-gram (Kneser-Ney)", "unigram", "long-range", "pitch_class"):
        assert text in res.output
    r = json.loads(out.read_text())
    for key in ("nats_per_token", "nats_per_note", "perplexity", "tokens", "notes"):
        assert key in r and key in r["baselines"]["unigram"] and key in r["baselines"]["ngram"]
    assert r["nats_per_note"] == pytest.approx(r["nats_per_token"] * r["tokens"] / r["notes"])
    assert r["data"]["kind"] == "corpus" and r["data"]["split"] == "val"
    assert r["baselines"]["ngram"]["tokens"] == r["tokens"]
    buckets = r["long_range"]["buckets"]
    assert [b["distance"] for b in buckets] == [8, 16]
    assert r["long_range"]["min_position"] == 32  # the training window is longer than the distances
    assert all(b["targets"] > 0 and b["gain"] is not None for b in buckets)
    m = r["music"]
    assert m["sample_pieces"] == 2 and set(m["features"]) >= {"pitch_class", "ioi", "velocity"}
    assert {"oa", "kl"} <= set(m["features"]["pitch_range"])
    assert "samples" in m["self_similarity"] and "rate" in m["degenerate"]["samples"]
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_evaluate_on_a_midi_folder_lists_unreadable_files(run: tuple[Path, Path, Path]) -> None:
    _, run_dir, tmp = run
    folder = tmp / "midi-eval"
    make_midi_files(folder, n=2, seed=5, bars=4)
    (folder / "broken.mid").write_bytes(b"MThd garbage")
    songs = tmp / "songs"
    make_midi_files(songs, n=2, seed=9, bars=4)
    out = tmp / "midi.json"
    res = CliRunner().invoke(
        main,
        ["evaluate", str(run_dir), str(folder), "--samples-dir", str(songs), "--json", str(out),
         "--distances", "", "--device", "cpu"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "broken.mid" in res.output
    r = json.loads(out.read_text())
    assert r["data"]["kind"] == "midi" and r["data"]["pieces"] == 2
    assert [f["path"].endswith("broken.mid") for f in r["data"]["failed"]] == [True]
    assert "long_range" not in r
    assert r["music"]["sample_pieces"] == 2 and r["music"]["reference_pieces"] == 2
    assert r["baselines"]["train_tokens"] > 0  # fit on the checkpoint's own corpus


def test_evaluate_without_data_uses_the_training_corpus(run: tuple[Path, Path, Path], tmp_path: Path) -> None:
    corpus, run_dir, _ = run
    res = CliRunner().invoke(
        main, ["evaluate", str(run_dir), "--samples", "0", "--distances", "", "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    assert f"{corpus}, validation split" in res.output
    # the same checkpoint after its corpus is gone: say what to pass
    gone = tmp_path / "corpus-moved"
    shutil.copytree(corpus, gone)
    meta_file = tmp_path / "ck" / "checkpoint.json"
    shutil.copytree(run_dir / "best", meta_file.parent)
    meta = json.loads(meta_file.read_text())
    meta["corpus"]["path"] = str(tmp_path / "nowhere")
    meta_file.write_text(json.dumps(meta))
    res = CliRunner().invoke(main, ["evaluate", str(meta_file.parent), "--samples", "0", "--device", "cpu"])
    assert res.exit_code == 1
    assert "no data given" in res.output and "pass a folder of MIDI files or a corpus" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_bad_inputs_give_one_line_errors(run: tuple[Path, Path, Path], tmp_path: Path) -> None:
    corpus, run_dir, tmp = run
    other = build_tiny_corpus(tmp_path, n=3, encoding="performance")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["evaluate", str(tmp_path / "missing"), str(corpus)], "no such checkpoint"),
        (["evaluate", str(run_dir), str(other)], "another tokenizer"),
        (["evaluate", str(run_dir), str(empty)], "no MIDI files"),
        (["evaluate", str(run_dir), str(tmp_path / "nothing")], "no such file or folder"),
        (["evaluate", str(run_dir), str(corpus), "--distances", "8,x"], "comma-separated"),
        (["evaluate", str(run_dir), str(corpus), "--samples", "0", "--plot", "x.png"], "--plot"),
    ]
    for args, message in cases:
        res = CliRunner().invoke(main, [*args, "--device", "cpu"])
        assert res.exit_code != 0, args
        assert message in res.output, (args, res.output)
        assert "Traceback" not in res.output


def test_unreadable_files_only_are_an_error(tmp_path: Path, run: tuple[Path, Path, Path]) -> None:
    _, run_dir, _ = run
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.mid").write_bytes(b"not midi at all")
    write_midi(Score(TPQ, [], [TempoChange(0, 120.0)], []), folder / "silent.mid")
    res = CliRunner().invoke(main, ["evaluate", str(run_dir), str(folder), "--device", "cpu"])
    assert res.exit_code == 1
    assert "none of the 2 MIDI files could be used" in res.output


def test_read_samples_takes_cut_from_the_sidecar_key(tmp_path: Path) -> None:
    from composer.evaluate import read_samples

    songs = tmp_path / "songs"
    make_midi_files(songs, n=4, seed=2, bars=2)
    files = sorted(songs.glob("*.mid"))
    sidecars = [
        {"cut": True, "warnings": []},
        {"cut": False, "warnings": ["reached the token cap; ended by force"]},  # the wording is not read
        None,  # no sidecar: not cut
        "not json",
    ]
    for f, side in zip(files, sidecars):
        if side is not None:
            f.with_suffix(".json").write_text(side if isinstance(side, str) else json.dumps(side))
    assert read_samples(songs).cut == [True, False, False, False]


# ----------------------------------------------------------------------------------- the neural cache


def _copy_checkpoint(run_dir: Path, dest: Path, cache: CacheConfig | None) -> Path:
    """run_dir/best copied to ``dest`` with ``cache`` stored (None: no cache at all)."""
    shutil.copytree(run_dir / "best", dest)
    meta_file = dest / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    meta.pop("cache", None)
    meta_file.write_text(json.dumps(meta))
    if cache is not None:
        save_cache(dest, cache, {"nll_model": 2.0, "nll_cache": 1.5, "targets": 100})
    return dest


def _evaluate_json(args: list[str], out: Path) -> tuple[str, dict]:
    res = CliRunner().invoke(main, [*args, "--json", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return res.output, json.loads(out.read_text())


def test_a_stored_cache_adds_its_rows_and_no_cache_keeps_the_plain_figures(
    run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    corpus, run_dir, _ = run
    config = CacheConfig(theta=1.0, lam=0.5, size=512)
    cached_ck = _copy_checkpoint(run_dir, tmp_path / "cached", config)
    plain_ck = _copy_checkpoint(run_dir, tmp_path / "plain", None)
    common = [str(corpus), "--samples", "0", "--distances", "8,16", "--targets", "64", "--order", "2"]
    text, r = _evaluate_json(["evaluate", str(cached_ck), *common], tmp_path / "c.json")
    no_text, no = _evaluate_json(["evaluate", str(cached_ck), *common, "--no-cache"], tmp_path / "n.json")
    _, plain = _evaluate_json(["evaluate", str(plain_ck), *common], tmp_path / "p.json")

    # the cache rows and keys
    assert "LSTM + cache" in text and "theta 1, lambda 0.5, size 512" in text
    c = r["cache"]
    assert c["config"] == {
        "theta": 1.0,
        "lam": 0.5,
        "size": 512,
        "sample_lam": None,
        "min_lag": 0,
        "sample_min_lag": None,
    }
    assert c["fit"]["nll_cache"] == 1.5
    assert c["tokens"] == r["tokens"] and c["notes"] == r["notes"]
    assert c["nats_per_note"] == pytest.approx(c["nats_per_token"] * c["tokens"] / c["notes"])
    # the tiny corpus repeats its bars: the cache, which copies from the piece's own past, helps
    assert c["nats_per_token"] < r["nats_per_token"]
    lr = r["long_range"]
    assert lr["cache"] == c["config"]
    for b in lr["buckets"]:
        bc = b["cache"]
        assert bc["gain"] == pytest.approx(bc["nll_reset"] - bc["nll_full"])
        assert bc["nll_full"] < b["nll_full"]
        assert 0.0 <= b["copyable"] <= 1.0
    assert lr["buckets"][0]["copyable"] > 0.5  # a reset 8 tokens back could copy most of what follows

    # --no-cache (and a checkpoint without one): exactly the plain figures, and no cache rows
    assert "LSTM + cache" not in no_text and no["cache"] is None and no["long_range"]["cache"] is None
    keys = ("nats_per_token", "nats_per_note", "perplexity", "tokens", "notes")
    for other in (no, plain):
        assert {k: other[k] for k in keys} == {k: r[k] for k in keys}
        for b, ob in zip(r["long_range"]["buckets"], other["long_range"]["buckets"]):
            assert ob["cache"] is None
            assert (ob["nll_full"], ob["nll_reset"], ob["gain"], ob["copyable"]) == (
                b["nll_full"], b["nll_reset"], b["gain"], b["copyable"]
            )  # fmt: skip
    plain_row = next(line for line in text.splitlines() if "LSTM (this checkpoint)" in line)
    assert plain_row in no_text.splitlines()


def test_long_range_with_the_cache_cuts_the_cache_with_the_history() -> None:
    model = _model(40, seed=2)
    rng = np.random.default_rng(3)
    part = rng.integers(3, 40, 40)
    pieces = [np.concatenate([[1], part, part, part, [2]])]  # a phrase three times
    config = CacheConfig(theta=1.0, lam=0.4, size=256)
    full = piece_nlls(model, pieces)
    full_cache = cached_piece_nlls(model, pieces, config)
    # a reset reaching the piece's start is the full history, with the cache as without
    lr = long_range(model, pieces, full, (500,), min_position=1, cache=config, full_cache=full_cache)
    b = lr.buckets[0]
    assert b.gain == 0.0 and b.gain_cache == 0.0
    # a real cut: the window is scored with the cache over its own tokens only
    lr = long_range(model, pieces, full, (8, 60), min_position=81, cache=config, full_cache=full_cache)
    short, long = lr.buckets
    p, t = pieces[0], np.arange(81, len(pieces[0]))
    with torch.inference_mode():
        want = window_nlls(model, p[t[:, None] - 8 + np.arange(8)[None, :]], p[t], config)
    assert short.nll_reset_cache == pytest.approx(float(want.mean()))
    assert short.nll_full_cache == pytest.approx(float(full_cache[0][t - 1].mean()))
    # the cache over the whole past holds the earlier copies, the one over an 8-token window does not
    assert short.gain_cache is not None and short.gain_cache > 0.1
    # targets 81..121 (the third copy, then EOS): at least 8 back, the second copy 40 back predicts each
    # but EOS; at least 60 back only the first copy can, once its 12-token context lies inside the piece
    assert short.copyable == pytest.approx(40 / 41) and long.copyable == pytest.approx(28 / 41)
    assert lr.to_dict()["buckets"][0]["cache"]["gain"] == pytest.approx(short.gain_cache)
