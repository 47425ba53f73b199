"""The mixed-precision paths of training, run on the CPU.

On a GPU, ``composer train`` runs under float16 autocast with a ``GradScaler`` (cuDNN runs the LSTM in
float16 under any autocast dtype; ``composer.device.amp_dtype`` says more). CI has no GPU, so these tests
drive the same code on the CPU: autocast with bfloat16 (the one low-precision dtype oneDNN's LSTM runs in
on the CPU) and a CPU ``GradScaler`` around it, which exercises the loss-scaling bookkeeping: scale,
unscale before clipping, the fused optimizer's skip on overflow, the scale saved and restored on resume.
What the CPU cannot show (cuDNN's kernels, real float16 overflow) is left to
``benchmarks/train.py --device cuda``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import composer.train as train_mod
from composer.checkpoint import load_checkpoint, read_checkpoint
from composer.device import amp_dtype
from composer.sample import Length, generate
from composer.train import train
from tests.helpers_train import build_tiny_corpus, metrics_losses, tiny_config

torch.set_num_threads(1)


def _cpu_runs_bf16_lstm() -> bool:
    """oneDNN runs an LSTM in bfloat16 only on CPUs with AVX-512 (BF16); elsewhere it refuses to build one."""
    lstm = torch.nn.LSTM(4, 4, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 2, 4))
    except RuntimeError:
        return False
    return True


needs_bf16_lstm = pytest.mark.skipif(
    not _cpu_runs_bf16_lstm(), reason="this CPU's oneDNN has no bfloat16 LSTM (needs AVX-512)"
)


def test_gpu_precision_choice() -> None:
    assert amp_dtype(torch.device("cuda")) is torch.float16  # with loss scaling, never unscaled bf16
    assert amp_dtype(torch.device("cuda"), enabled=False) is None  # --no-amp
    assert amp_dtype(torch.device("cpu")) is None and amp_dtype(torch.device("mps")) is None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_corpus(tmp_path_factory.mktemp("corpus"), n=12)


@pytest.fixture
def bf16_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make training choose bfloat16 autocast on the CPU, as it does on a GPU with bf16."""
    monkeypatch.setattr(
        train_mod, "amp_dtype", lambda device, enabled=True: torch.bfloat16 if enabled else None
    )


@pytest.fixture
def scalers(monkeypatch: pytest.MonkeyPatch) -> list[torch.amp.GradScaler]:
    """Give every run a CPU loss scaler (as float16 training on a GPU gets) and keep them for inspection."""
    made: list[torch.amp.GradScaler] = []

    def make(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
        made.append(torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_factor=2.0, growth_interval=3))
        return made[-1]

    monkeypatch.setattr(train_mod, "make_grad_scaler", make)
    return made


@needs_bf16_lstm
def test_autocast_with_loss_scaling_learns_resumes_exactly_and_its_checkpoint_generates(
    corpus: Path, tmp_path: Path, bf16_on_cpu: None, scalers: list[torch.amp.GradScaler]
) -> None:
    cfg = tiny_config(max_steps=30, eval_every=10, lr_decay_steps=30, lr=2e-2)
    full = train(corpus, tmp_path / "full", cfg, progress=False, plot=False)
    assert full.skipped_steps == 0 and np.all(np.isfinite(full.train_losses))
    assert np.mean(full.train_losses[-5:]) < np.mean(full.train_losses[:5]) - 1.0
    assert full.val_loss is not None and np.isfinite(full.val_loss)

    # the checkpoint holds float32 weights whatever the autocast dtype was
    ck = load_checkpoint(tmp_path / "full")
    assert all(p.dtype == torch.float32 for p in ck.model.parameters())
    state = read_checkpoint(tmp_path / "full" / "last").state_tensors()
    lstm_state = [t for k, t in state.items() if "lstm_state" in k]
    assert lstm_state and all(t.dtype == torch.float32 for t in lstm_state)

    # stopped at step 13 and resumed, the bf16 run retraces the uninterrupted curve
    train(corpus, tmp_path / "part", cfg.replace(max_steps=13), progress=False, plot=False)
    rest = train(corpus, tmp_path / "part", cfg, resume=True, progress=False, plot=False)
    a, b = metrics_losses(tmp_path / "full/metrics.csv"), metrics_losses(tmp_path / "part/metrics.csv")
    assert sorted(b) == list(range(1, 31))
    np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], rtol=1e-5, atol=1e-6)
    assert rest.val_loss == pytest.approx(full.val_loss, rel=1e-5)

    # a model trained under autocast samples in float32 like any other
    songs = generate(ck, 2, length=Length(bars=2), seed=1)
    assert len(songs) == 2 and all(s.notes > 0 for s in songs)


def test_loss_scaling_unscales_before_clipping_and_resumes_with_its_scale(
    corpus: Path, tmp_path: Path, scalers: list[torch.amp.GradScaler]
) -> None:
    cfg = tiny_config(max_steps=16, eval_every=4, lr_decay_steps=16, grad_clip=0.5)
    full = train(corpus, tmp_path / "full", cfg, progress=False, plot=False)
    scale_full = scalers[-1].get_scale()
    assert scale_full == 2.0**10 * 2 ** (16 // 3)  # no overflow: it grew every 3 steps

    # unscale_ runs before clip_grad_norm_, so clipping sees the true gradients and the run follows the
    # unscaled run's loss curve (clipping the scaled ones would cut every step 1024x harder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_mod, "make_grad_scaler", lambda device, dtype: None)
        plain = train(corpus, tmp_path / "plain", cfg, progress=False, plot=False)
    np.testing.assert_allclose(full.train_losses, plain.train_losses, rtol=1e-4, atol=1e-5)

    # the scale is part of the training state: a resumed run continues with it, not with the initial one
    train(corpus, tmp_path / "part", cfg.replace(max_steps=7), progress=False, plot=False)
    assert scalers[-1].get_scale() == 2.0**10 * 2**2
    rest = train(corpus, tmp_path / "part", cfg, resume=True, progress=False, plot=False)
    assert scalers[-1].get_scale() == scale_full
    a, b = metrics_losses(tmp_path / "full/metrics.csv"), metrics_losses(tmp_path / "part/metrics.csv")
    np.testing.assert_allclose([b[k] for k in a], [a[k] for k in a], rtol=1e-6, atol=1e-7)
    assert rest.val_loss == pytest.approx(full.val_loss, rel=1e-6)


def test_an_overflowing_step_is_skipped_by_the_scaler_and_the_scale_backs_off(
    corpus: Path, tmp_path: Path, scalers: list[torch.amp.GradScaler]
) -> None:
    weights: dict[int, torch.Tensor] = {}

    def overflow_at_4(step: int, loss: float, model: torch.nn.Module) -> None:
        param = model.lstm.weight_hh_l0
        weights[step] = param.detach().clone()
        if step == 4:  # the next backward's gradients overflow, as float16 ones do on a GPU

            def once(grad: torch.Tensor) -> torch.Tensor:
                handle.remove()
                return torch.full_like(grad, float("inf"))

            handle = param.register_hook(once)

    res = train(
        corpus, tmp_path / "run", tiny_config(max_steps=8), progress=False, plot=False, on_step=overflow_at_4
    )
    assert res.steps == 8 and np.all(np.isfinite(res.train_losses))
    assert res.skipped_steps == 0  # the scaler's own skip, not the NaN-loss guard's
    assert torch.equal(weights[4], weights[5])  # step 5 overflowed: the optimizer did not move
    assert not torch.equal(weights[5], weights[6])  # and training went on
    # grown after steps 1-3, halved at step 5, grown after steps 6-8
    assert scalers[-1].get_scale() == 2.0**10 * 2 / 2 * 2


def test_a_checkpoint_from_an_unfused_optimizer_resumes_under_loss_scaling(
    corpus: Path, tmp_path: Path, scalers: list[torch.amp.GradScaler]
) -> None:
    """A run from MPS (or an older version) saved ``fused: false``; resumed where AdamW is fused and the
    loss is scaled, the restored flag must not make the scaler hand its overflow flag to the slow loop."""
    run = tmp_path / "run"
    train(corpus, run, tiny_config(max_steps=4, eval_every=4), progress=False, plot=False)
    meta_path = run / "last" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    groups = meta["train_state"]["optimizer"]["param_groups"]
    assert all(g["fused"] is True for g in groups)
    for g in groups:
        g["fused"] = False
    meta_path.write_text(json.dumps(meta))
    res = train(corpus, run, tiny_config(max_steps=8, eval_every=4), resume=True, progress=False, plot=False)
    assert res.steps == 8 and np.all(np.isfinite(res.train_losses))
