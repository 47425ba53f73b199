"""Training: the streaming batcher, augmentation, the loop, exact resume, divergence handling, DDP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from composer.batching import Augmenter, Batcher, PieceStream, TokenStore, WindowPlan
from composer.checkpoint import load_checkpoint, read_checkpoint
from composer.corpus import Corpus
from composer.device import out_of_memory_as
from composer.distributed import DistInfo
from composer.errors import CheckpointError, ComposerError, ConfigError
from composer.metrics import read_metrics
from composer.model import LSTMModel, ModelConfig, detach_state, reset_rows
from composer.nll import piece_nlls, validate
from composer.runstate import extend_schedule, get_lr, initial_schedule
from composer.train import _oom_message, _Run, train
from composer.train_config import AUGMENTATION_FIELDS, AugmentConfig, TrainConfig
from tests.helpers_train import build_tiny_corpus, make_midi_files, metrics_losses, metrics_rates, tiny_config

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_corpus(tmp_path_factory.mktemp("corpus"), n=16)


# ------------------------------------------------------------------------------------------- config


def test_train_config_validation_and_round_trip() -> None:
    cfg = TrainConfig(batch_size=8, window=64, max_minutes=1.5)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match=r"^batch_size must be an integer in 1\.\.65536, got 0$"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="min_lr must be in 0..lr"):
        TrainConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ConfigError, match="device must be one of"):
        TrainConfig(device="tpu")
    with pytest.raises(ConfigError, match="preset must be one of"):
        TrainConfig(preset="gigantic")
    with pytest.raises(ConfigError, match="tie_weights needs"):
        TrainConfig(embed_dim=64, hidden_size=128, tie_weights=True)
    with pytest.raises(ConfigError, match=r"lr_decay_steps must be at least warmup_steps \(100\), got 50"):
        TrainConfig(warmup_steps=100, lr_decay_steps=50)
    with pytest.raises(ConfigError, match="unknown train config key.*: colour"):
        TrainConfig.from_dict({**cfg.to_dict(), "colour": "blue"})
    assert cfg.replace(lr=1e-3).lr == 1e-3
    # the learning rate defaults to the preset's, the cosine floor to a tenth of the peak
    assert (TrainConfig().peak_lr, TrainConfig().final_lr) == (5e-3, pytest.approx(5e-4))
    assert TrainConfig(preset="large").peak_lr == 1e-3
    assert TrainConfig(lr=2e-3).final_lr == pytest.approx(2e-4)


def test_augment_config_is_validated_and_drawn_from_the_train_config() -> None:
    assert TrainConfig(transpose=3, time_stretch=0.1).augment == AugmentConfig(transpose=3, time_stretch=0.1)
    assert AUGMENTATION_FIELDS == ("transpose", "velocity_jitter", "time_stretch", "time_stretch_steps")
    with pytest.raises(ConfigError, match=r"^time_stretch must be a number in 0\.0\.\.0\.5, got 0\.9$"):
        TrainConfig(time_stretch=0.9)
    with pytest.raises(ConfigError, match=r"^transpose must be an integer in 0\.\.127, got -1$"):
        AugmentConfig(transpose=-1)


def test_lr_schedule_warmup_then_cosine() -> None:
    cfg = TrainConfig(lr=1e-2, min_lr=1e-3, warmup_steps=10, max_steps=110)
    lrs = [get_lr(s, cfg) for s in range(130)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11], strict=True))  # linear warm-up
    assert lrs[10] == pytest.approx(1e-2)
    assert all(a >= b for a, b in zip(lrs[10:110], lrs[11:111], strict=True))  # cosine decay
    assert lrs[60] == pytest.approx((1e-2 + 1e-3) / 2)
    assert lrs[110:] == [pytest.approx(1e-3)] * 20


# ------------------------------------------------------------------------------------------- batcher


@dataclass
class FakePiece:
    offset: int
    length: int
    notes: int = 0
    pitch_min: int | None = None
    pitch_max: int | None = None


def fake_store(lengths: list[int]) -> tuple[TokenStore, list[np.ndarray]]:
    """Pieces whose token ids are unique (piece * 1000 + position), with gaps between them in the file."""
    pieces, chunks, contents, off = [], [], [], 0
    for i, n in enumerate(lengths):
        ids = (i + 1) * 1000 + np.arange(n)
        chunks += [ids, np.full(3, 7)]  # 3 junk tokens between pieces must never be read
        pieces.append(FakePiece(off, n))
        contents.append(ids)
        off += n + 3
    corpus_tokens = np.concatenate(chunks).astype(np.uint16)
    return TokenStore(corpus_tokens, pieces, torch.device("cpu")), contents


def test_stream_walks_each_piece_window_by_window_and_reshuffles_per_epoch() -> None:
    lengths = np.array([5, 17, 40, 2, 9, 23])
    stream = PieceStream(lengths, batch_size=3, window=4, rng=np.random.default_rng(0))
    started: list[int] = []
    where = {r: None for r in range(3)}  # row -> (piece, next cursor)
    for _ in range(200):
        plan = stream.next()
        for r in range(3):
            p, cur, n, new = int(plan.piece[r]), int(plan.cursor[r]), int(plan.n_valid[r]), bool(plan.new[r])
            if new:
                assert cur == 0
                prev = where[r]
                assert prev is None or prev[1] >= lengths[prev[0]] - 1  # the previous piece was finished
                started.append(p)
            else:
                assert where[r] == (p, cur)  # same piece, the very next window
            assert n == min(4, lengths[p] - 1 - cur) > 0
            where[r] = (p, cur + 4)
    epochs = [sorted(started[i : i + 6]) for i in range(0, len(started) - 6, 6)]
    assert epochs and all(e == list(range(6)) for e in epochs)  # every piece once per epoch
    assert len({tuple(started[i : i + 6]) for i in range(0, 24, 6)}) > 1  # and reshuffled


def test_batcher_rows_continue_pieces_and_reset_at_boundaries() -> None:
    lengths = [11, 6, 19, 3]
    store, contents = fake_store(lengths)
    window = 4
    stream = PieceStream(store.lengths, batch_size=2, window=window, rng=np.random.default_rng(1))
    batcher = Batcher(store, window, pad_id=0, augmenter=None)
    seen: dict[int, list[int]] = {0: [], 1: []}
    finished: list[tuple[int, list[int]]] = []
    current = [-1, -1]
    for _ in range(40):
        plan = stream.next()
        inputs, targets, keep = batcher.gather(plan)
        for r in range(2):
            p = int(plan.piece[r])
            assert bool(keep[r]) == (not plan.new[r])  # state zeroed exactly when a piece starts
            if plan.new[r]:
                if current[r] >= 0:
                    finished.append((current[r], seen[r]))
                current[r], seen[r] = p, []
            n = int(plan.n_valid[r])
            piece = contents[p]
            cur = int(plan.cursor[r])
            np.testing.assert_array_equal(inputs[r, :n].numpy(), piece[cur : cur + n])
            np.testing.assert_array_equal(targets[r, :n].numpy(), piece[cur + 1 : cur + 1 + n])
            assert (targets[r, n:] == 0).all()  # PAD after the piece's end, never the next piece
            seen[r] += inputs[r, :n].tolist()
    assert finished
    for p, toks in finished:  # the windows of one row concatenate to the whole piece (minus the last token)
        assert toks == contents[p][:-1].tolist()


def test_streamed_windows_reproduce_whole_piece_logits() -> None:
    """With the state carried and reset as the training loop does, each row computes exactly what one
    forward pass over the whole piece computes."""
    torch.manual_seed(0)
    lengths = [23, 9, 14]
    store, contents = fake_store(lengths)
    vocab = 4000
    model = LSTMModel(ModelConfig(vocab, 8, 8, 2, 0.0, True)).eval()
    stream = PieceStream(store.lengths, batch_size=2, window=5, rng=np.random.default_rng(3))
    batcher = Batcher(store, 5, pad_id=0, augmenter=None)
    state = model.init_state(2)
    got: dict[int, list[torch.Tensor]] = {}
    row_piece = [-1, -1]
    done: list[tuple[int, torch.Tensor]] = []
    with torch.no_grad():
        for _ in range(30):
            plan = stream.next()
            inputs, _, keep = batcher.gather(plan)
            state = reset_rows(state, keep)
            logits, state = model(inputs, state)
            state = detach_state(state)
            for r in range(2):
                if plan.new[r]:
                    if row_piece[r] >= 0:
                        done.append((row_piece[r], torch.cat(got[r])))
                    row_piece[r], got[r] = int(plan.piece[r]), []
                got[r].append(logits[r, : int(plan.n_valid[r])])
        for p, streamed in done:
            ids = torch.as_tensor(contents[p][:-1], dtype=torch.long)[None]
            whole, _ = model(ids)
            torch.testing.assert_close(streamed, whole[0], rtol=1e-5, atol=1e-5)
    assert len(done) >= 4


def test_validation_stream_visits_each_piece_once() -> None:
    stream = PieceStream(np.array([7, 3, 12]), batch_size=2, window=4, rng=None, loop=False)
    covered = {0: 0, 1: 0, 2: 0}
    for _ in range(20):
        plan = stream.next()
        if (plan.piece < 0).all():
            break
        for r in np.flatnonzero(plan.piece >= 0):
            covered[int(plan.piece[r])] += int(plan.n_valid[r])
    assert covered == {0: 6, 1: 2, 2: 11} and stream.exhausted


def test_validation_agrees_with_whole_piece_nlls(corpus: Path) -> None:
    """Training's streamed validation and ``piece_nlls`` (composer evaluate) compute one likelihood."""
    c = Corpus.open(corpus)
    tok, pieces = c.tokenizer, c.pieces("val")
    torch.manual_seed(0)
    model = LSTMModel(tiny_config().model_config(tok.vocab.size)).eval()
    store = TokenStore(c.tokens, pieces, torch.device("cpu"), keep_host=True)
    result = validate(model, store, tok, batch_size=2, window=16)
    nlls = piece_nlls(model, [c.piece_tokens(p) for p in pieces], pad_id=int(tok.pad_id))
    assert result is not None and result.tokens == sum(len(x) for x in nlls)
    assert result.loss == pytest.approx(sum(float(x.sum()) for x in nlls) / result.tokens, rel=1e-5)
    assert result.notes == sum(tok.note_count(c.piece_tokens(p)[1:]) for p in pieces)
    few = validate(model, store, tok, batch_size=2, window=16, max_batches=1)
    assert few is not None and few.tokens == 2 * 16  # one window of both rows: a prefix of two pieces


# ------------------------------------------------------------------------------------------- augmentation


def test_time_stretch_tables_only_for_encodings_that_support_it(corpus: Path, tmp_path: Path) -> None:
    perf = build_tiny_corpus(tmp_path, n=6, encoding="performance")
    cfg = AugmentConfig(velocity_jitter=0, time_stretch=0.1, time_stretch_steps=5)
    for path, options in ((corpus, 1), (perf, 5)):
        c = Corpus.open(path)
        store = TokenStore(c.tokens, c.pieces(), torch.device("cpu"))
        aug = Augmenter(c.tokenizer, cfg, store, torch.device("cpu"))
        assert aug.n_other == options and (aug.other is None) == (options == 1), c.tokenizer.config.encoding


def test_default_training_feeds_a_beat_corpus_unchanged(corpus: Path) -> None:
    # a corpus played at one velocity (the chorales) must be learnt at that velocity: jittered training
    # spread the samples over three (velocity overlap 0.37 against 1.0 without it)
    c = Corpus.open(corpus)
    store = TokenStore(c.tokens, c.pieces(), torch.device("cpu"))
    cfg = TrainConfig()
    assert cfg.augment.velocity_jitter == 0 and cfg.augment.transpose == 0
    aug = Augmenter(c.tokenizer, cfg.augment, store, torch.device("cpu"))
    assert aug.pitch is None and aug.other is None and aug.n_other == 1


def test_token_store_holds_ids_in_the_narrowest_type_and_gathers_them_exactly() -> None:
    ids = np.array([0, 1, 32767, 65535, 40000], dtype=np.uint16)
    pieces = [FakePiece(0, 3), FakePiece(3, 2)]
    small = TokenStore(ids[:3], pieces[:1], torch.device("cpu"), vocab_size=32768)
    assert small.tokens.dtype == torch.int16 and small.tokens.tolist() == [0, 1, 32767]
    wide = TokenStore(ids, pieces, torch.device("cpu"), vocab_size=65536)
    assert wide.tokens.dtype == torch.int32 and wide.tokens.tolist() == ids.tolist()
    assert TokenStore(ids, pieces, torch.device("cpu")).tokens.dtype == torch.int32  # size unknown
    batcher = Batcher(small, window=2, pad_id=0, augmenter=None)
    one = np.array([0])
    plan = WindowPlan(
        piece=one, cursor=one, n_valid=np.array([2]), new=np.array([True]), aug=np.zeros((1, 3), int)
    )
    x, y, _mask = batcher.gather(plan)
    assert x.dtype == torch.int64 and x.tolist() == [[0, 1]] and y.tolist() == [[1, 32767]]


def test_augmentation_transposes_pitches_within_range_but_never_drums(corpus: Path) -> None:
    c = Corpus.open(corpus)
    tok = c.tokenizer
    pieces = c.pieces("train") + c.pieces("val")
    store = TokenStore(c.tokens, pieces, torch.device("cpu"), tok, drums=True)
    assert store.drums is not None and bool(store.drums.any())  # the fixture has drum tracks
    cfg = tiny_config(transpose=5, velocity_jitter=0)
    aug = Augmenter(tok, cfg, store, torch.device("cpu"))
    rng = np.random.default_rng(0)
    for i, p in enumerate(pieces):
        for _ in range(20):
            t_idx, _, _ = aug.sample(rng, i)
            shift = t_idx - 5
            assert -5 <= shift <= 5 and p.pitch_min + shift >= 0 and p.pitch_max + shift <= 127
    pitch0, npitch = tok.vocab.offset("PITCH"), tok.vocab.range("PITCH").size
    batcher = Batcher(store, 400, int(tok.pad_id), aug)
    stream = PieceStream(store.lengths, batch_size=len(pieces), window=400, rng=None, loop=False)
    plan = stream.next()
    plan.aug[:, 0] = 5 + 3  # everything up a minor third
    shifted, _, _ = batcher.gather(plan)
    plan.aug[:, 0] = 5
    plain, _, _ = batcher.gather(plan)
    is_pitch = (plain >= pitch0) & (plain < pitch0 + npitch)
    drum = torch.zeros_like(plain, dtype=torch.bool)
    for r in range(len(pieces)):
        n = int(plan.n_valid[r])
        start = int(store.offsets[plan.piece[r]])
        drum[r, :n] = store.drums[start : start + n]
    assert bool((is_pitch & drum).any()) and bool((is_pitch & ~drum).any())
    moved = is_pitch & ~drum
    assert torch.equal(shifted[moved], plain[moved] + 3)
    assert torch.equal(shifted[~moved], plain[~moved])  # drums and non-pitch tokens untouched


def test_transposition_stays_inside_a_narrowed_pitch_range(tmp_path: Path) -> None:
    """With pitch_min/pitch_max narrowed, a shift must never push a note out of the vocabulary's range,
    where the lookup table would leave it untransposed while the rest of the piece moves."""
    from composer.corpus import build_corpus
    from composer.tokenizer import TokenizerConfig

    midi = make_midi_files(tmp_path / "midi", n=8)[0].parent  # lead up to 85, bass down to 31
    config = TokenizerConfig(pitch_min=36, pitch_max=80)
    build_corpus([midi], tmp_path / "corpus", config=config, workers=1, val_fraction=0.0)
    c = Corpus.open(tmp_path / "corpus")
    tok, pieces = c.tokenizer, c.pieces()
    store = TokenStore(c.tokens, pieces, torch.device("cpu"), tok, drums=True)
    t = 8
    aug = Augmenter(tok, tiny_config(transpose=t, velocity_jitter=0), store, torch.device("cpu"))
    window = int(store.lengths.max())
    batcher = Batcher(store, window, int(tok.pad_id), aug)
    plan = PieceStream(store.lengths, len(pieces), window, rng=None, loop=False).next()
    plan.aug[:, 0] = t  # no shift
    plain, _, _ = batcher.gather(plan)
    assert store.drums is not None
    drum = torch.zeros_like(plain, dtype=torch.bool)
    for r in range(len(pieces)):
        start, n = int(store.offsets[plan.piece[r]]), int(plan.n_valid[r])
        drum[r, :n] = store.drums[start : start + n]
    pitch0 = tok.vocab.offset("PITCH")
    pitched = (plain >= pitch0) & (plain < pitch0 + tok.vocab.range("PITCH").size) & ~drum
    assert int((plain[pitched] - pitch0).max()) == 80 - 36  # the fixture reaches the top of the range
    rng = np.random.default_rng(0)
    shifts = set()
    for _ in range(30):
        plan.aug[:, 0] = [aug.sample(rng, int(p))[0] for p in plan.piece]
        shifted, _, _ = batcher.gather(plan)
        shift = torch.from_numpy(plan.aug[:, 0] - t)[:, None].expand_as(plain)
        assert torch.equal(shifted[pitched], plain[pitched] + shift[pitched])  # every pitched note moved
        shifts |= set(shift[:, 0].tolist())
    assert len(shifts) > 4  # and transposition still happens


# ------------------------------------------------------------------------------------------- the loop


def test_loss_falls_and_run_folder_is_complete(corpus: Path, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=60, eval_every=30, lr=2e-2, warmup_steps=5)
    res = train(corpus, tmp_path / "run", cfg, progress=False)
    assert res.steps == 60 and res.stop_reason == "max_steps" and res.skipped_steps == 0
    first, last = np.mean(res.train_losses[:5]), np.mean(res.train_losses[-10:])
    assert last < first - 2.0, (first, last)  # from ~ln(vocab) = 6.5 to well under 4.5
    assert res.val_loss is not None and res.val_loss < 5.0 and res.val_nats_per_note > res.val_loss
    assert res.tokens_per_s > 0
    run = tmp_path / "run"
    for name in ("last/model.safetensors", "last/checkpoint.json", "best/checkpoint.json", "loss.png"):
        assert (run / name).is_file(), name
    rows = read_metrics(run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 61))
    assert [int(r["step"]) for r in rows if r["val_loss"]] == [30, 60]
    assert json.loads((run / "last" / "checkpoint.json").read_text())["step"] == 60
    with pytest.raises(ComposerError, match="already holds a training run"):
        train(corpus, run, cfg, progress=False)


def test_music_statistics_are_logged_at_each_validation_when_asked(corpus: Path, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=20, eval_every=10, music_samples=2)
    train(corpus, tmp_path / "run", cfg, progress=False)
    rows = read_metrics(tmp_path / "run" / "metrics.csv")
    evals = [r for r in rows if r["val_loss"]]
    assert [int(r["step"]) for r in evals] == [10, 20]
    for r in evals:
        assert 0.0 <= float(r["music_mean_oa"]) <= 1.0 and float(r["music_mean_kl"]) >= 0.0
    assert all(r["music_mean_oa"] == "" for r in rows if not r["val_loss"])


def test_music_statistics_leave_the_run_alone(corpus: Path, tmp_path: Path) -> None:
    cfg = tiny_config(music_samples=2)
    run = _Run(Corpus.open(corpus), tmp_path / "run", cfg, None, DistInfo(), None, print)
    run.model.train()
    rng_before = torch.get_rng_state()
    stats = run.music_stats()
    assert torch.equal(torch.get_rng_state(), rng_before)  # its own generator: the run's course is unchanged
    assert run.model.training
    assert {"music_mean_oa", "music_mean_kl", "music_degenerate_rate"} <= set(stats)
    assert 0.0 <= stats["music_mean_oa"] <= 1.0
    assert stats == run.music_stats()


def test_checkpoint_remembers_the_corpus_generation_needs(corpus: Path, tmp_path: Path) -> None:
    train(corpus, tmp_path / "run", tiny_config(max_steps=2, eval_every=2), progress=False, plot=False)
    meta = read_checkpoint(tmp_path / "run" / "last").meta["corpus"]
    c = Corpus.open(corpus)
    pieces = c.pieces()
    assert (meta["path"], meta["fingerprint"], meta["content_fingerprint"], meta["val_fraction"]) == (
        str(c.path), c.fingerprint, c.content_fingerprint, c.val_fraction
    )  # fmt: skip
    assert (meta["pieces"], meta["notes"]) == (len(pieces), sum(p.notes for p in pieces))
    assert meta["programs"] == sorted({x for p in pieces for x in p.programs})
    assert meta["notes_per_second"] == pytest.approx(meta["notes"] / sum(p.seconds for p in pieces))


def test_resume_follows_the_uninterrupted_loss_curve(corpus: Path, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=16, eval_every=4, lr_decay_steps=16, grad_accum=2)
    full = train(corpus, tmp_path / "full", cfg, progress=False, plot=False)
    part = train(corpus, tmp_path / "part", cfg.replace(max_steps=7), progress=False, plot=False)
    assert part.steps == 7
    rest = train(corpus, tmp_path / "part", cfg, resume=True, progress=False, plot=False)
    assert rest.steps == 16 and len(rest.train_losses) == 9
    a, b = metrics_losses(tmp_path / "full/metrics.csv"), metrics_losses(tmp_path / "part/metrics.csv")
    assert sorted(a) == sorted(b) == list(range(1, 17))
    np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], rtol=1e-6, atol=1e-7)
    assert rest.val_loss == pytest.approx(full.val_loss, rel=1e-6)
    # resume with no config uses the stored one; nothing left to do
    again = train(corpus, tmp_path / "part", resume=True, progress=False, plot=False)
    assert again.steps == 16 and again.train_losses == []


def test_extending_a_finished_run_continues_the_learning_rate_and_the_loss(
    corpus: Path, tmp_path: Path
) -> None:
    """A finished run resumed with a larger --max-steps must not re-stretch the cosine from the peak."""
    cfg = tiny_config(max_steps=24, eval_every=12, lr=2e-2, min_lr=1e-3, warmup_steps=2)
    run = tmp_path / "run"
    train(corpus, run, cfg, progress=False, plot=False)
    said: list[str] = []
    longer = cfg.replace(max_steps=36, eval_every=1)
    train(corpus, run, longer, resume=True, progress=False, plot=False, log=said.append)
    rows = read_metrics(run / "metrics.csv")
    lrs = metrics_rates(run / "metrics.csv")
    assert sorted(lrs) == list(range(1, 37))
    assert lrs[24] == pytest.approx(get_lr(23, cfg))  # the last step of the finished schedule
    # the extension carries on at the floor the schedule reached (nothing is left to decay), no jump
    assert [lrs[s] for s in range(25, 37)] == [pytest.approx(1e-3)] * 12
    val = {int(r["step"]): float(r["val_loss"]) for r in rows if r["val_loss"]}
    assert abs(val[25] - val[24]) < 0.01, (val[24], val[25])  # re-stretched, one step moved it 0.02
    assert any("learning rate from step 24: 0.001" in m for m in said), said


def test_extending_a_run_stopped_mid_schedule_decays_from_the_rate_in_force(
    corpus: Path, tmp_path: Path
) -> None:
    cfg = tiny_config(max_steps=20, eval_every=10, lr=2e-2, min_lr=1e-3, warmup_steps=2)

    def ctrl_c_at_7(step: int, loss: float, model: torch.nn.Module) -> None:
        if step == 7:
            os.kill(os.getpid(), signal.SIGINT)  # stops after step 8, as --max-minutes would

    run = tmp_path / "run"
    assert train(corpus, run, cfg, progress=False, plot=False, on_step=ctrl_c_at_7).steps == 8
    longer = cfg.replace(max_steps=40)
    train(corpus, run, longer, resume=True, progress=False, plot=False)
    lrs = metrics_rates(run / "metrics.csv")
    assert lrs[9] == pytest.approx(get_lr(8, cfg))  # step 9 uses the rate the first plan had for it
    tail = [lrs[s] for s in range(9, 41)]
    assert all(a > b for a, b in zip(tail, tail[1:], strict=False))  # one smooth decay ...
    assert tail[-1] == pytest.approx(1e-3, rel=0.05) and lrs[20] > get_lr(19, cfg)  # ... stretched to step 40

    # the new plan is saved with the run: stopped again and resumed, it follows the same curve exactly
    def ctrl_c_at_20(step: int, loss: float, model: torch.nn.Module) -> None:
        if step == 20:
            os.kill(os.getpid(), signal.SIGINT)

    part = tmp_path / "part"
    train(corpus, part, cfg, progress=False, plot=False, on_step=ctrl_c_at_7)
    res = train(corpus, part, longer, resume=True, progress=False, plot=False, on_step=ctrl_c_at_20)
    assert res.steps == 21
    train(corpus, part, longer, resume=True, progress=False, plot=False)
    again = metrics_rates(part / "metrics.csv")
    assert sorted(again) == list(range(1, 41))
    np.testing.assert_allclose([again[s] for s in range(1, 41)], [lrs[s] for s in range(1, 41)], rtol=1e-12)
    a, b = metrics_losses(run / "metrics.csv"), metrics_losses(part / "metrics.csv")
    np.testing.assert_allclose(
        [b[s] for s in range(1, 41)], [a[s] for s in range(1, 41)], rtol=1e-6, atol=1e-7
    )


def test_lr_schedule_segments_are_continuous_and_follow_the_saved_plan() -> None:
    cfg = TrainConfig(lr=1e-2, min_lr=1e-3, warmup_steps=10, max_steps=110)
    plan = initial_schedule(cfg)
    assert [get_lr(s, cfg, plan) for s in range(130)] == [get_lr(s, cfg) for s in range(130)]
    # finished, then extended: stays at the floor, since nothing is left to decay
    done = extend_schedule(plan, 110, cfg, cfg.replace(max_steps=300))
    assert [get_lr(s, cfg, done) for s in (110, 200, 299)] == [pytest.approx(1e-3)] * 3
    # mid-way, then extended: a new cosine from the rate in force down to min_lr at the new end
    mid = extend_schedule(plan, 60, cfg, cfg.replace(max_steps=300))
    assert len(mid) == 2 and get_lr(60, cfg, mid) == pytest.approx(get_lr(60, cfg))
    assert get_lr(59, cfg, mid) == get_lr(59, cfg) and get_lr(300, cfg, mid) == pytest.approx(1e-3)
    # a lower floor decays further from where the rate is
    lower = extend_schedule(plan, 110, cfg, cfg.replace(min_lr=1e-4, max_steps=210))
    assert get_lr(110, cfg, lower) == pytest.approx(1e-3) and get_lr(210, cfg, lower) == pytest.approx(1e-4)
    # still warming up: the warm-up carries on to the same peak, the cosine just ends later
    warm = extend_schedule(plan, 5, cfg, cfg.replace(max_steps=300))
    assert get_lr(5, cfg, warm) == get_lr(5, cfg) and get_lr(10, cfg, warm) == pytest.approx(1e-2)
    assert get_lr(155, cfg, warm) == pytest.approx((1e-2 + 1e-3) / 2)
    # an explicit new --lr scales the rate in force by the same factor
    halved = extend_schedule(plan, 60, cfg, cfg.replace(lr=5e-3, min_lr=5e-4))
    assert get_lr(60, cfg, halved) == pytest.approx(get_lr(60, cfg) / 2)
    # unchanged settings keep the plan as it is (what an exact resume needs)
    assert extend_schedule(mid, 80, cfg.replace(max_steps=300), cfg.replace(max_steps=300)) == mid


def test_resume_with_other_augmentation_settings_restarts_the_data_order(
    corpus: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    train(corpus, run, tiny_config(max_steps=6, transpose=6, velocity_jitter=2), progress=False, plot=False)
    said: list[str] = []
    res = train(
        corpus,
        run,
        tiny_config(max_steps=12, transpose=1, velocity_jitter=0),
        resume=True,
        progress=False,
        plot=False,
        log=said.append,
    )
    assert res.steps == 12 and np.all(np.isfinite(res.train_losses))
    assert any("augmentation settings changed" in m and "resume at step 6" in m for m in said), said


def test_read_metrics_drops_a_line_torn_by_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("step,train_loss,skipped\r\n1,6.5,0\r\n2,6.25,10\r\n3,6.0,1")  # "1" of "12", cut
    assert [(r["step"], r["skipped"]) for r in read_metrics(path)] == [("1", "0"), ("2", "10")]
    assert read_metrics(tmp_path / "absent.csv") == []


KILL_SCRIPT = """
import json, sys, time
import torch
torch.set_num_threads(1)
from composer.train import train
from composer.train_config import TrainConfig
cfg = TrainConfig.from_dict(json.loads(sys.argv[3]))
train(sys.argv[1], sys.argv[2], cfg, progress=False, plot=False, on_step=lambda *a: time.sleep(0.1))
"""


def test_sigkill_then_resume_matches_uninterrupted(corpus: Path, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=30, eval_every=3)
    script = tmp_path / "kill_me.py"
    script.write_text(KILL_SCRIPT)
    run = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(corpus), str(run), json.dumps(cfg.to_dict())],
        env=env,
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            meta = run / "last" / "checkpoint.json"
            if meta.is_file() and json.loads(meta.read_text())["step"] >= 9:
                break
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed_at = read_checkpoint(run / "last").meta["step"]
    assert proc.returncode == -signal.SIGKILL and 9 <= killed_at < 30
    resumed = train(corpus, run, cfg, resume=True, progress=False, plot=False)
    assert resumed.steps == 30
    full = train(corpus, tmp_path / "full", cfg, progress=False, plot=False)
    a, b = metrics_losses(tmp_path / "full/metrics.csv"), metrics_losses(run / "metrics.csv")
    assert sorted(b) == list(range(1, 31))  # rows the killed run logged past its checkpoint were dropped
    np.testing.assert_allclose(
        [b[k] for k in range(1, 31)], [a[k] for k in range(1, 31)], rtol=1e-6, atol=1e-7
    )
    assert resumed.val_loss == pytest.approx(full.val_loss, rel=1e-6)


def test_nan_steps_are_skipped_and_a_streak_stops_with_the_last_good_checkpoint(
    corpus: Path, tmp_path: Path
) -> None:
    saved: dict[str, torch.Tensor] = {}

    def one_bad_step(step: int, loss: float, model: torch.nn.Module) -> None:
        w = model.embed.weight  # type: ignore[union-attr]
        if step == 5:
            saved["w"] = w.detach().clone()
            with torch.no_grad():
                w.fill_(float("nan"))
        elif step == 6:
            assert loss != loss  # NaN: this step was skipped
            with torch.no_grad():
                w.copy_(saved["w"])

    res = train(
        corpus, tmp_path / "one", tiny_config(max_steps=10), progress=False, plot=False, on_step=one_bad_step
    )
    assert res.steps == 10 and res.skipped_steps == 1 and np.isfinite(res.train_losses[-1])
    assert not np.isfinite(res.train_losses[5]) and np.isfinite(res.train_losses[6])

    def break_at_7(step: int, loss: float, model: torch.nn.Module) -> None:
        if step == 7:
            with torch.no_grad():
                model.embed.weight.fill_(float("nan"))  # type: ignore[union-attr]

    run = tmp_path / "diverged"
    cfg = tiny_config(max_steps=40, eval_every=5, max_bad_steps=4)
    with pytest.raises(ComposerError, match="diverged: 4 steps in a row.*last good checkpoint"):
        train(corpus, run, cfg, progress=False, plot=False, on_step=break_at_7)
    ck = load_checkpoint(run / "last")
    assert ck.step == 5 and all(torch.isfinite(p).all() for p in ck.model.parameters())


def test_time_budget_and_ctrl_c_stop_cleanly_with_a_checkpoint(corpus: Path, tmp_path: Path) -> None:
    res = train(corpus, tmp_path / "timed", tiny_config(max_minutes=1e-6), progress=False, plot=False)
    assert (res.steps, res.stop_reason) == (1, "max_minutes") and load_checkpoint(res.run_dir).step == 1

    def ctrl_c_at_3(step: int, loss: float, model: torch.nn.Module) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # first Ctrl-C: finish the step, save, return

    before = signal.getsignal(signal.SIGINT)  # the default, or SIG_IGN in a job started in the background
    res = train(corpus, tmp_path / "int", tiny_config(), progress=False, plot=False, on_step=ctrl_c_at_3)
    assert (res.steps, res.stop_reason) == (4, "interrupted")  # the flag is read at the next step
    assert read_checkpoint(tmp_path / "int" / "last").meta["step"] == 4
    assert signal.getsignal(signal.SIGINT) == before  # handler restored


def test_resume_refuses_another_vocabulary(corpus: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(corpus, run, tiny_config(max_steps=2, eval_every=2), progress=False, plot=False)
    perf = build_tiny_corpus(tmp_path, n=6, encoding="performance")
    with pytest.raises(CheckpointError, match="vocabulary .* does not match corpus"):
        train(perf, run, resume=True, progress=False, plot=False)
    with pytest.raises(ConfigError, match="architecture cannot change"):
        train(
            corpus, run, tiny_config(max_steps=4, hidden_size=48, embed_dim=48), resume=True, progress=False
        )


def _own_corpus(tmp_path: Path, val_fraction: float) -> tuple[Path, Path]:
    """A corpus of 16 pieces in its own folder (it gets rebuilt), and the MIDI folder it came from."""
    from composer.corpus import build_corpus

    midi = make_midi_files(tmp_path / "midi", n=16)[0].parent
    build_corpus([midi], tmp_path / "corpus", workers=1, val_fraction=val_fraction)
    return tmp_path / "corpus", midi


def test_resume_refuses_a_corpus_rebuilt_with_another_split(tmp_path: Path) -> None:
    from composer.corpus import build_corpus

    corpus, midi = _own_corpus(tmp_path, 0.2)
    run = tmp_path / "run"
    train(corpus, run, tiny_config(max_steps=4, eval_every=4), progress=False, plot=False)
    build_corpus([midi], corpus, workers=1, val_fraction=0.5)
    refused = r"another train/validation split .*val fraction 0\.2 then, 0\.5 now.*--val-fraction 0\.2, or"
    with pytest.raises(CheckpointError, match=refused):
        train(corpus, run, tiny_config(max_steps=8, eval_every=4), resume=True, progress=False, plot=False)
    build_corpus([midi], corpus, workers=1, val_fraction=0.2)  # as the message says: back to 0.2
    res = train(corpus, run, tiny_config(max_steps=8, eval_every=4), resume=True, progress=False, plot=False)
    assert res.steps == 8


def _as_written_before_split_fingerprints(run: Path, content_fingerprint: str) -> None:
    meta_file = run / "last" / "checkpoint.json"
    meta = json.loads(meta_file.read_text())
    meta["corpus"] = {
        k: v for k, v in meta["corpus"].items() if k not in ("content_fingerprint", "val_fraction")
    }
    meta["corpus"]["fingerprint"] = content_fingerprint  # older builds fingerprinted the tokens only
    meta_file.write_text(json.dumps(meta))


def test_resume_of_an_older_checkpoint_checks_the_split_by_its_train_piece_count(tmp_path: Path) -> None:
    from composer.corpus import build_corpus

    corpus, midi = _own_corpus(tmp_path, 0.2)
    cfg = tiny_config(max_steps=12, eval_every=4, lr_decay_steps=12)
    full = train(corpus, tmp_path / "full", cfg, progress=False, plot=False)
    run = tmp_path / "run"
    train(corpus, run, cfg.replace(max_steps=4), progress=False, plot=False)
    content = Corpus.open(corpus).content_fingerprint
    _as_written_before_split_fingerprints(run, content)
    build_corpus([midi], corpus, workers=1, val_fraction=0.5)
    with pytest.raises(
        CheckpointError, match=r"another train/validation split .*\(\d+ train pieces then, \d+ now\)"
    ):
        train(corpus, run, cfg, resume=True, progress=False, plot=False)
    build_corpus([midi], corpus, workers=1, val_fraction=0.2)  # the same pieces and split: resumes exactly
    said: list[str] = []
    res = train(corpus, run, cfg, resume=True, progress=False, plot=False, log=said.append)
    assert res.steps == 12 and not any("corpus changed" in m for m in said), said
    assert res.val_loss == pytest.approx(full.val_loss, rel=1e-6)
    # other pieces than it was trained on: its split cannot be checked
    make_midi_files(midi, n=20)
    build_corpus([midi], corpus, workers=1, val_fraction=0.2)
    run2 = tmp_path / "run2"
    train(corpus, run2, cfg.replace(max_steps=4), progress=False, plot=False)
    _as_written_before_split_fingerprints(run2, content)
    with pytest.raises(
        CheckpointError, match="predates .* cannot be checked; rebuild the corpus from the files"
    ):
        train(corpus, run2, cfg, resume=True, progress=False, plot=False)


def test_resume_on_a_corpus_with_new_files_and_the_same_split_rule_restarts_the_data_order(
    tmp_path: Path,
) -> None:
    from composer.corpus import build_corpus

    corpus, midi = _own_corpus(tmp_path, 0.2)
    run = tmp_path / "run"
    train(corpus, run, tiny_config(max_steps=4, eval_every=4), progress=False, plot=False)
    make_midi_files(midi, n=20)  # four more pieces; the sixteen keep their split
    build_corpus([midi], corpus, workers=1, val_fraction=0.2)
    said: list[str] = []
    cfg = tiny_config(max_steps=8, eval_every=4)
    res = train(corpus, run, cfg, resume=True, progress=False, plot=False, log=said.append)
    assert res.steps == 8 and any("the corpus changed" in m for m in said), said


def test_performance_encoding_trains_with_time_stretch(tmp_path: Path) -> None:
    perf = build_tiny_corpus(tmp_path, n=6, encoding="performance")
    res = train(
        perf,
        tmp_path / "run",
        tiny_config(max_steps=4, eval_every=4, time_stretch=0.1),
        progress=False,
        plot=False,
    )
    assert res.steps == 4 and res.val_loss is not None and np.isfinite(res.val_loss)


def test_out_of_memory_becomes_a_composer_error_naming_what_to_lower() -> None:
    with (
        pytest.raises(ComposerError, match="--batch-size.*--window.*--preset"),
        out_of_memory_as(_oom_message(TrainConfig())),
    ):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(ComposerError, match="--batch-size"), out_of_memory_as(_oom_message(TrainConfig())):
        raise RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1 GB)")
    with pytest.raises(RuntimeError, match="^shape mismatch$"), out_of_memory_as("unused"):
        raise RuntimeError("shape mismatch")  # any other error passes through unchanged


def test_out_of_memory_while_moving_data_to_the_device_is_reported_too(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_room(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB")

    monkeypatch.setattr("composer.train.TokenStore", no_room)
    with pytest.raises(ComposerError, match="out of memory.*--batch-size"):
        train(corpus, tmp_path / "run", tiny_config(), progress=False, plot=False)


# ------------------------------------------------------------------------------------------- DDP

DDP_SCRIPT = """
import json, os, sys
import torch
torch.set_num_threads(1)
from composer.train import train
from composer.train_config import TrainConfig
cfg = TrainConfig.from_dict(json.loads(sys.argv[3]))
r = train(sys.argv[1], sys.argv[2], cfg, progress=False, plot=False)
print("RESULT " + json.dumps({"rank": int(os.environ["RANK"]), "steps": r.steps, "val": r.val_loss,
                               "last": None if r.last_path is None else str(r.last_path)}), flush=True)
"""


def test_ddp_gloo_two_processes(corpus: Path, tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    run = tmp_path / "ddp-run"
    cfg = tiny_config(max_steps=6, eval_every=3, batch_size=2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(corpus), str(run), json.dumps(cfg.to_dict())],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    results = sorted(
        (json.loads(line.split("RESULT ", 1)[1]) for line in out.stdout.splitlines() if "RESULT " in line),
        key=lambda r: r["rank"],
    )
    assert [r["rank"] for r in results] == [0, 1]
    assert results[0]["steps"] == results[1]["steps"] == 6
    assert results[0]["val"] == pytest.approx(results[1]["val"])  # val loss all-reduced
    assert results[0]["last"] is not None and results[1]["last"] is None  # only rank 0 writes
    rows = read_metrics(run / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 7))  # one writer, one row per step
    raw = read_checkpoint(run / "last")
    assert raw.meta["world_size"] == 2 and len(raw.meta["train_state"]["streams"]) == 2
    assert sorted(p.name for p in run.iterdir()) == [".lock", "best", "last", "metrics.csv"]  # rank 0's lock


DDP_GRAD_SCRIPT = """
import json, os, sys
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
import torch.distributed as dist
from composer.corpus import Corpus
from composer.distributed import setup_distributed
from composer.train import _Run
from composer.train_config import TrainConfig
cfg = TrainConfig.from_dict(json.loads(sys.argv[2]))
info = setup_distributed("cpu")
run = _Run(Corpus.open(sys.argv[1]), Path(sys.argv[3]), cfg, None, info, None, print)
out = {"init." + k: v.detach().clone().numpy() for k, v in run.model.state_dict().items()}
windows = []
gather = run.batcher.gather
run.batcher.gather = lambda plan: windows.append(gather(plan)) or windows[-1]
def capture():  # instead of the optimizer's update: the gradients it would apply
    out.update({"grad." + n: p.grad.detach().clone().numpy() for n, p in run.model.named_parameters()})
run.optimizer.step = capture
run.train_step(0.0, stop_vote=lambda: False)
for i, (x, y, keep) in enumerate(windows):
    out[f"x{i}"], out[f"y{i}"], out[f"keep{i}"] = x.numpy(), y.numpy(), keep.numpy()
np.savez(os.path.join(sys.argv[3], f"rank{info.rank}.npz"), **out)
dist.destroy_process_group()
"""


def test_ddp_gradient_is_the_global_token_mean_when_ranks_hold_unequal_targets(
    corpus: Path, tmp_path: Path
) -> None:
    """Each rank's loss must be weighted by its share of all target tokens, not averaged rank by rank."""
    import torch.nn.functional as F

    script = tmp_path / "ddp_grad.py"
    script.write_text(DDP_GRAD_SCRIPT)
    # whole pieces in one window, so the ranks' target counts differ by their pieces' lengths
    cfg = tiny_config(batch_size=2, window=2048, grad_accum=2, dropout=0.0, grad_clip=0.0, conditions="none")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(script), str(corpus), json.dumps(cfg.to_dict()), str(tmp_path)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in (0, 1)]
    pad = int(Corpus.open(corpus).tokenizer.pad_id)
    counts = [sum(int((d[f"y{i}"] != pad).sum()) for i in range(cfg.grad_accum)) for d in ranks]
    assert abs(counts[0] - counts[1]) > 0.05 * sum(counts), counts  # unequal, or the test proves nothing

    # one process, the same windows: the mean over every real target token of both ranks
    model = LSTMModel(cfg.model_config(Corpus.open(corpus).tokenizer.vocab.size))
    model.load_state_dict({k[5:]: torch.from_numpy(v) for k, v in ranks[0].items() if k.startswith("init.")})
    nll = torch.zeros(())
    for d in ranks:
        state = model.init_state(cfg.batch_size)
        for i in range(cfg.grad_accum):
            state = reset_rows(state, torch.from_numpy(d[f"keep{i}"]))
            logits, state = model(torch.from_numpy(d[f"x{i}"]), state)
            y = torch.from_numpy(d[f"y{i}"])
            nll = nll + F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=pad,
                                        reduction="sum")  # fmt: skip
            state = detach_state(state)
    (nll / sum(counts)).backward()
    for name, p in model.named_parameters():
        for d in ranks:  # DDP leaves every rank with the same, all-reduced gradient
            np.testing.assert_allclose(d["grad." + name], p.grad.numpy(), rtol=1e-4, atol=1e-7, err_msg=name)


# ------------------------------------------------------------------------------------------- CLI


def test_cli_train_resume_and_info(corpus: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from composer.cli import main

    run = tmp_path / "cli-run"
    small = ["--batch-size", "4", "--window", "32", "--eval-every", "2", "--threads", "1", "--device", "cpu"]
    small += ["--no-fit-cache"]
    runner = CliRunner()
    aug = ["--transpose", "3", "--velocity-jitter", "0"]
    res = runner.invoke(main, ["train", str(corpus), "-o", str(run), "--max-steps", "2", *small, *aug])
    assert res.exit_code == 0, res.output
    assert "2 steps (max steps)" in res.output and (run / "best" / "checkpoint.json").is_file()
    stored = read_checkpoint(run / "last").meta["train_config"]
    assert (stored["transpose"], stored["velocity_jitter"], stored["time_stretch"]) == (3, 0, 0.05)
    res = runner.invoke(main, ["train", str(corpus), "-o", str(run), "--max-steps", "3"])
    assert res.exit_code == 1 and "already holds a training run; pass --resume" in res.output
    # --resume keeps the stored settings and applies only the options given
    res = runner.invoke(main, ["train", str(corpus), "-o", str(run), "--resume", "--max-steps", "4"])
    assert res.exit_code == 0, res.output
    stored = read_checkpoint(run / "last").meta["train_config"]
    kept = (stored["max_steps"], stored["batch_size"], stored["window"], stored["num_threads"])
    assert kept == (4, 4, 32, 1) and stored["transpose"] == 3
    res = runner.invoke(main, ["info", str(run)])
    assert res.exit_code == 0, res.output
    assert "steps  4" in res.output and "LSTM 2 x 256" in res.output and str(corpus) in res.output
    assert "chrono_init 64 (twice the window)" in res.output
    res = runner.invoke(main, ["info", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "no such checkpoint" in res.output


def test_cli_no_tie_weights_gives_the_model_its_own_output_layer(corpus: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from composer.cli import main

    run = tmp_path / "untied"
    small = ["--batch-size", "2", "--window", "16", "--threads", "1", "--device", "cpu", "--no-fit-cache"]
    runner = CliRunner()
    res = runner.invoke(
        main, ["train", str(corpus), "-o", str(run), "--max-steps", "1", "--no-tie-weights", *small]
    )
    assert res.exit_code == 0, res.output
    assert read_checkpoint(run / "last").meta["model_config"]["tie_weights"] is False
    res = runner.invoke(main, ["info", str(run)])
    assert res.exit_code == 0 and "LSTM 2 x 256" in res.output and "tied embedding" not in res.output


# ------------------------------------------------------------------------------------------- streaming


@pytest.mark.parametrize("conditioned", [False, True])
def test_a_streamed_store_feeds_the_same_windows_as_a_packed_one(corpus: Path, conditioned: bool) -> None:
    """Read from the corpus file as rows start pieces, the windows (augmented, drums kept, condition tokens
    after BOS) are those of the packed copy, step after step and across epochs; so is validation."""
    from composer.conditions import from_corpus
    from composer.tokenizer import tokenizer_from_config

    c = Corpus.open(corpus)
    tok, pieces = c.tokenizer, c.pieces("train")
    prefixes = None
    if conditioned:
        cs = from_corpus(c, "auto")
        assert cs is not None
        tok = tokenizer_from_config(c.tokenizer.config, cs)
        prefixes = [cs.piece_prefix(tok.vocab, p) for p in pieces]
    cpu = torch.device("cpu")
    cfg = tiny_config(transpose=4, velocity_jitter=2)
    stores = [TokenStore(c.tokens, pieces, cpu, tok, drums=True, prefixes=prefixes, stream=s) for s in (0, 1)]
    assert stores[0].tokens is not None and stores[1].tokens is None and stores[1].drums is None
    batches = []
    for store in stores:
        aug = Augmenter(tok, cfg.augment, store, cpu, condition_dropout=0.3 if conditioned else 0.0)
        rng = np.random.default_rng(5)
        stream = PieceStream(store.lengths, 3, 16, rng=rng, sample_aug=lambda i, a=aug, g=rng: a.sample(g, i))
        batcher = Batcher(store, 16, int(tok.pad_id), aug)
        batches.append([batcher.gather(stream.next()) for _ in range(120)])
        assert stream.epoch >= 1  # the walk went round the pieces at least once
    for (x0, y0, k0), (x1, y1, k1) in zip(*batches, strict=True):
        assert torch.equal(x0, x1) and torch.equal(y0, y1) and torch.equal(k0, k1)
    assert not torch.equal(batches[0][0][0], batches[0][1][0])  # the windows move on

    val = c.pieces("val") + pieces[:3]
    model = LSTMModel(tiny_config().model_config(tok.vocab.size)).eval()
    packed = TokenStore(c.tokens, val, cpu, keep_host=True, vocab_size=tok.vocab.size)
    streamed = TokenStore(c.tokens, val, cpu, vocab_size=tok.vocab.size, stream=True)
    a = validate(model, packed, c.tokenizer, batch_size=2, window=16)
    b = validate(model, streamed, c.tokenizer, batch_size=2, window=16)
    assert a is not None and a == b and a.notes > 0


def test_training_on_the_cpu_streams_its_data_and_a_large_split_streams_anywhere() -> None:
    from composer.batching import DEVICE_SHARE, streams

    assert streams(torch.device("cpu"), 10)
    if torch.cuda.is_available():
        total = torch.cuda.get_device_properties(0).total_memory
        gpu = torch.device("cuda", 0)
        assert not streams(gpu, 1000)
        assert streams(gpu, int(DEVICE_SHARE * total / 2) + 1)
