"""Training: one readable loop, in the spirit of nanoGPT, for the LSTM in ``composer.model``.

How the data flows
------------------
``batch_size`` rows each stream through a piece, ``window`` tokens at a time (truncated backpropagation
through time): the LSTM state a row ends one window with is carried (detached) into its next window and
zeroed when the row starts a new piece. The pieces live in one token tensor on the device, each row draws
an augmentation per piece, and batches are gathered by index arithmetic; ``composer.batching`` has all of
that. This module is the loop: learning-rate schedule, optimizer step, validation, checkpoints, metrics.

Everything that decides the next step (weights, optimizer moments, every row's piece, cursor, carried
state and augmentation, the shuffled order, RNG states) is saved in the checkpoint, so ``resume=True``
continues exactly where a run stopped, even after SIGKILL: on the CPU the resumed loss curve equals the
uninterrupted one. On a GPU it continues the same run but not bit for bit: cuDNN draws the LSTM's
between-layer dropout masks from its own random state, which is not saved.

Under ``torchrun`` (RANK/WORLD_SIZE set) the same ``train()`` runs DistributedDataParallel
(``composer.distributed``): every process streams its own share of the pieces, validation losses are summed
over processes, and process 0 alone writes checkpoints, metrics (``composer.metrics``) and plots.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from composer import __version__
from composer.batching import Augmenter, Batcher, PieceStream, TokenStore
from composer.checkpoint import (
    BEST,
    LAST,
    METRICS_FILE,
    PLOT_FILE,
    RawCheckpoint,
    find_last,
    join_tensors,
    model_from_raw,
    optimizer_state_from_json,
    read_checkpoint,
    split_tensors,
    write_checkpoint,
)
from composer.configs import check_range, known_fields
from composer.device import (
    amp_dtype,
    autocast,
    describe,
    make_grad_scaler,
    out_of_memory_as,
    resolve_device,
    set_threads,
)
from composer.distributed import DistInfo, all_reduce_sum, setup_distributed
from composer.errors import CheckpointError, ComposerError, ConfigError, CorpusError
from composer.fsutil import folder_lock
from composer.metrics import MetricsLog, plot_metrics
from composer.model import PRESETS, LSTMModel, ModelConfig, State, detach_state, reset_rows

# ------------------------------------------------------------------------------------------- config


#: Settings that decide each row's augmentation draw; a resume that changes them restarts the data order.
AUGMENTATION_FIELDS = ("transpose", "velocity_jitter", "time_stretch", "time_stretch_steps")

#: Peak learning rate per preset (measured on the Bach chorales for small: 5e-3 beat 3e-3 at equal steps;
#: the large preset uses Performance RNN's 1e-3).
PRESET_LR = {"small": 5e-3, "medium": 3e-3, "large": 1e-3}


@dataclass(frozen=True)
class TrainConfig:
    """Every hyper-parameter of a training run. Stored in each checkpoint; validated on construction."""

    # --- model: a preset, optionally overridden field by field (None keeps the preset's value)
    preset: str = "small"
    embed_dim: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    dropout: float | None = None
    tie_weights: bool | None = None
    # --- data
    # CPU defaults, chosen by measurement: at a fixed time budget, more and smaller updates learn more
    # (batch 16 x window 64 reached 2.89 nats/note on Bach in 3 CPU-minutes, 32 x 128 reached 3.09-3.13);
    # the LSTM state still carries across windows. On a GPU raise both (e.g. 128 x 256).
    batch_size: int = 16  # rows streamed in parallel (per process)
    window: int = 64  # tokens per truncated-BPTT window
    # --- optimisation (AdamW, linear warm-up then cosine decay to min_lr)
    lr: float | None = None  # peak learning rate; None = the preset's (PRESET_LR)
    min_lr: float | None = None  # where the cosine ends; None = lr / 10
    warmup_steps: int = 100
    lr_decay_steps: int | None = None  # where the cosine reaches min_lr; None = max_steps
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 = off
    grad_accum: int = 1  # windows per optimizer step
    # --- stopping
    max_steps: int = 6000
    max_minutes: float | None = None  # wall-clock budget of one invocation
    eval_every: int = 500
    eval_batches: int = 50  # validation windows per evaluation (per process), always the same; 0 = all
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    music_samples: int = 0  # songs sampled at each evaluation for the music statistics; 0 = off
    max_bad_steps: int = 10  # consecutive non-finite losses before giving up
    # --- runtime
    seed: int = 1337
    device: str = "auto"
    amp: bool = True  # mixed precision on CUDA: float16 autocast + loss scaling
    num_threads: int = 0  # CPU threads for torch; 0 = one per four cores (device.auto_threads)
    # --- augmentation, drawn per piece
    # Transposition is off by default: on the Bach chorales it cost 0.7 nats/note after 3 CPU-minutes
    # (2.19 against 2.93 at +-6 semitones; 2.37 at +-2) and 0.15 after 10 (1.99 against 2.14), since
    # absolute-pitch tokens make every key a pattern of its own to learn. Without it the model begins to
    # overfit by 10 minutes (train 0.61, val 0.81 nats/token), so --transpose is for long runs.
    transpose: int = 0  # up to this many semitones either way, kept inside the piece's pitch range
    velocity_jitter: int = 1  # shift all velocities by up to this many bins either way
    time_stretch: float = 0.05  # performance encoding: stretch time by up to this fraction either way
    time_stretch_steps: int = 5  # distinct stretch factors in [1 - time_stretch, 1 + time_stretch]

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        check_range("batch_size", self.batch_size, 1, 65536)
        check_range("window", self.window, 1, 1 << 20)
        for name in ("lr", "min_lr"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), 0.0, 10.0, (int, float))
        if self.final_lr > self.peak_lr:
            raise ConfigError(f"min_lr must be in 0..lr ({self.peak_lr}), got {self.min_lr!r}")
        check_range("warmup_steps", self.warmup_steps, 0, 1 << 40)
        if self.lr_decay_steps is not None:
            check_range("lr_decay_steps", self.lr_decay_steps, 1, 1 << 40)
            if self.lr_decay_steps < self.warmup_steps:
                raise ConfigError(
                    f"lr_decay_steps must be at least warmup_steps ({self.warmup_steps}), "
                    f"got {self.lr_decay_steps}"
                )
        check_range("weight_decay", self.weight_decay, 0.0, 10.0, (int, float))
        check_range("beta1", self.beta1, 0.0, 0.999999, (int, float))
        check_range("beta2", self.beta2, 0.0, 0.999999, (int, float))
        check_range("grad_clip", self.grad_clip, 0.0, 1e6, (int, float))
        check_range("grad_accum", self.grad_accum, 1, 4096)
        check_range("max_steps", self.max_steps, 1, 1 << 40)
        if self.max_minutes is not None:
            check_range("max_minutes", self.max_minutes, 0.0, 1e7, (int, float))
        check_range("eval_every", self.eval_every, 1, 1 << 40)
        check_range("eval_batches", self.eval_batches, 0, 1 << 40)
        check_range("patience", self.patience, 0, 1 << 20)
        check_range("music_samples", self.music_samples, 0, 256)
        check_range("max_bad_steps", self.max_bad_steps, 1, 1 << 20)
        check_range("seed", self.seed, 0, 2**63 - 1)
        if self.device.split(":", 1)[0] not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"device must be one of auto, cpu, cuda, mps, got {self.device!r}")
        if not isinstance(self.amp, bool):
            raise ConfigError(f"amp must be true or false, got {self.amp!r}")
        check_range("num_threads", self.num_threads, 0, 1024)
        check_range("transpose", self.transpose, 0, 127)
        check_range("velocity_jitter", self.velocity_jitter, 0, 127)
        check_range("time_stretch", self.time_stretch, 0.0, 0.5, (int, float))
        check_range("time_stretch_steps", self.time_stretch_steps, 1, 101)
        self.model_config(vocab_size=16)  # validates the architecture overrides early

    @property
    def peak_lr(self) -> float:
        return float(self.lr if self.lr is not None else PRESET_LR[self.preset])

    @property
    def final_lr(self) -> float:
        return float(self.min_lr if self.min_lr is not None else self.peak_lr / 10)

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig.from_preset(
            self.preset,
            vocab_size,
            embed_dim=self.embed_dim,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            tie_weights=self.tie_weights,
        )

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(**known_fields(cls, data, "train"))


@dataclass
class TrainResult:
    steps: int  # optimizer steps completed in total (including earlier runs this one resumed)
    best_val_loss: float | None  # nats/token
    best_step: int | None
    val_loss: float | None  # at the last evaluation
    val_nats_per_note: float | None
    last_path: Path | None
    best_path: Path | None
    run_dir: Path
    stop_reason: str  # max_steps | max_minutes | early_stop | interrupted
    tokens_per_s: float  # real (non-PAD) target tokens per second of training, all processes
    positions_per_s: float  # batch x window positions per second (what a bare loop processes)
    elapsed_s: float
    skipped_steps: int = 0
    train_losses: list[float] = field(default_factory=list)  # this invocation's per-step train losses


@dataclass(frozen=True)
class LRSegment:
    """One phase of the learning-rate schedule, from optimizer step ``start`` (0-based) on.

    ``warmup`` steps of linear warm-up to ``peak`` (the first phase only), then a cosine from ``peak`` down
    to ``final`` at step ``end``, and ``final`` after it. A run starts with one phase (``initial_schedule``);
    a resume that changes the plan starts another at the step it resumes at (``extend_schedule``). The
    phases are saved in the checkpoint, so the rate is a function of the run, not of the latest settings.
    """

    start: int
    end: int
    peak: float
    final: float
    warmup: int = 0

    def lr(self, step: int) -> float:
        k = step - self.start
        if k < self.warmup:
            return self.peak * (k + 1) / (self.warmup + 1)
        if step >= self.end:
            return self.final
        ratio = (k - self.warmup) / max(1, self.end - self.start - self.warmup)
        coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
        return self.final + coeff * (self.peak - self.final)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LRSegment:
        start, end, warmup = int(data["start"]), int(data["end"]), int(data.get("warmup", 0))
        return cls(start, end, float(data["peak"]), float(data["final"]), warmup)


def _decay_end(config: TrainConfig) -> int:
    return config.lr_decay_steps or config.max_steps


def initial_schedule(config: TrainConfig) -> list[LRSegment]:
    """A new run's schedule: linear warm-up, then cosine to ``min_lr`` at ``lr_decay_steps`` (or the end)."""
    return [LRSegment(0, _decay_end(config), config.peak_lr, config.final_lr, config.warmup_steps)]


def _plan(config: TrainConfig) -> tuple[float, float, int, int]:
    return config.peak_lr, config.final_lr, config.warmup_steps, _decay_end(config)


def extend_schedule(
    schedule: list[LRSegment], step: int, old: TrainConfig, new: TrainConfig
) -> list[LRSegment]:
    """The schedule a run planned with ``old`` continues with at ``step`` under ``new`` settings.

    Unchanged settings keep the schedule. Otherwise the rate stays continuous: during the first warm-up the
    first phase is planned afresh with the new settings (with the same peak and warm-up, the rate up to
    ``step`` is the same); after it a new phase starts at ``step``, a cosine from the rate in force there to
    the new ``min_lr`` at the new end, with no second warm-up. A finished run extended thus stays at its
    floor unless ``min_lr`` is lowered. A new ``lr`` scales the rate in force by new / old peak, as it
    scales the whole of a new run's schedule.
    """
    if _plan(old) == _plan(new):
        return list(schedule)
    first = schedule[0]
    if len(schedule) == 1 and step <= first.start + first.warmup:
        return initial_schedule(new)
    scale = new.peak_lr / old.peak_lr if old.peak_lr > 0 else 1.0
    rate = get_lr(step, old, schedule) * scale
    return [*(s for s in schedule if s.start < step), LRSegment(step, _decay_end(new), rate, new.final_lr)]


def get_lr(step: int, config: TrainConfig, schedule: list[LRSegment] | None = None) -> float:
    """Learning rate for optimizer step ``step`` (0-based) under ``schedule`` (default: a new run's)."""
    segments = schedule or initial_schedule(config)
    current = segments[0]
    for seg in segments[1:]:
        if seg.start <= step:
            current = seg
    return current.lr(step)


# ------------------------------------------------------------------------------------------- evaluation


@dataclass
class EvalResult:
    loss: float  # nats per token
    nats_per_note: float
    tokens: int
    notes: int


@torch.no_grad()
def evaluate(
    model: nn.Module,
    store: TokenStore,
    tokenizer: Any,
    batch_size: int,
    window: int,
    max_batches: int = 0,
    device_dtype: torch.dtype | None = None,
    dist_info: DistInfo | None = None,
) -> EvalResult | None:
    """Validation loss, streamed like training (state carried through each piece), deterministic.

    ``max_batches`` > 0 stops after that many windows (the same pieces every time). Returns ``None`` when
    there is nothing to evaluate on any process.
    """
    dist_info = dist_info or DistInfo()
    was_training = model.training
    model.eval()
    device = store.tokens.device
    pad_id = int(tokenizer.pad_id)
    acc = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    nll = torch.zeros((), dtype=acc, device=device)
    evaluated = np.zeros(len(store), dtype=np.int64)  # targets evaluated per piece (a prefix)
    if len(store):
        stream = PieceStream(store.lengths, batch_size, window, rng=None, loop=False)
        batcher = Batcher(store, window, pad_id, None)
        state = model.init_state(batch_size, device)  # type: ignore[operator]
        n = 0
        while not (max_batches and n >= max_batches):
            plan = stream.next()
            if (plan.piece < 0).all():
                break
            inputs, targets, keep = batcher.gather(plan)
            state = reset_rows(state, keep)
            with autocast(device, device_dtype):
                logits, state = model(inputs, state)
                loss = F.cross_entropy(
                    logits.reshape(-1, logits.size(-1)).float(),  # (B, T, V) -> (B*T, V)
                    targets.reshape(-1),  # (B, T) -> (B*T,)
                    ignore_index=pad_id,
                    reduction="sum",
                )
            nll += loss.to(acc)
            state = detach_state(state)
            act = plan.piece >= 0
            evaluated[plan.piece[act]] = plan.cursor[act] + plan.n_valid[act]
            n += 1
    tokens = int(evaluated.sum())
    notes = 0
    host = store.host
    for i in np.flatnonzero(evaluated).tolist():
        off = int(store.offsets[i])
        if host is not None:
            notes += int(tokenizer.note_count(host[off + 1 : off + 1 + int(evaluated[i])]))
    totals = torch.tensor([nll.item(), float(tokens), float(notes)], dtype=acc, device=device)
    totals = all_reduce_sum(totals, dist_info)
    if was_training:
        model.train()
    total_nll, total_tokens, total_notes = totals.tolist()
    if total_tokens <= 0:
        return None
    return EvalResult(
        loss=total_nll / total_tokens,
        nats_per_note=total_nll / total_notes if total_notes > 0 else float("nan"),
        tokens=int(total_tokens),
        notes=int(total_notes),
    )


# ------------------------------------------------------------------------------------------- helpers


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases).

    The fused kernel on CUDA and the CPU: on the CPU it is ~6x faster than the per-tensor loop torch picks
    by default there (0.6 against 3.6 ms a step for the small model), ~5% of a default training step.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=config.peak_lr, betas=(config.beta1, config.beta2), fused=device.type in ("cuda", "cpu")
    )


#: AdamW options that choose an implementation for this device, not the optimization itself.
_IMPLEMENTATION_KEYS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a saved optimizer state but keep the kernel choice ``make_optimizer`` made for this device.

    ``load_state_dict`` would also restore the saved run's ``fused``/``foreach`` flags: a run trained on
    MPS (not fused) and resumed on a GPU would get a non-fused AdamW that the loss scaler treats as fused,
    and fail at its first step.
    """
    for saved, live in zip(state["param_groups"], optimizer.param_groups, strict=False):
        for key in _IMPLEMENTATION_KEYS:
            if key in live:
                saved[key] = live[key]
    optimizer.load_state_dict(state)


def _rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["torch_cuda"] = torch.cuda.get_rng_state(device)
    return out


def _restore_rng(saved: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(saved["torch_cpu"].to(torch.uint8))
    if device.type == "cuda" and "torch_cuda" in saved:
        torch.cuda.set_rng_state(saved["torch_cuda"].to(torch.uint8), device)


class _GracefulStop:
    """First Ctrl-C: finish the current step, save, return. Second: stop at once."""

    def __init__(self, enabled: bool) -> None:
        self.requested = False
        self._old: Any = None
        self._enabled = enabled and threading.current_thread() is threading.main_thread()

    def __enter__(self) -> _GracefulStop:
        if self._enabled:
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
            signal.signal(signal.SIGINT, self._old)


def _oom_message(config: TrainConfig) -> str:
    return (
        f"the GPU ran out of memory (preset {config.preset}, batch size {config.batch_size}, window "
        f"{config.window}); lower --batch-size or --window, or choose a smaller --preset"
    )


def load_train_config(run_dir: str | os.PathLike[str]) -> TrainConfig | None:
    """The training config stored in a run folder's ``last`` checkpoint (for ``--resume``), if any."""
    last = find_last(run_dir)
    if last is None:
        return None
    raw = read_checkpoint(last, prefer=LAST)
    try:
        return TrainConfig.from_dict(raw.meta["train_config"])
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{raw.path}: bad train config ({e})") from None


# ------------------------------------------------------------------------------------------- train


def train(
    corpus: str | os.PathLike[str] | Any,
    out_dir: str | os.PathLike[str],
    config: TrainConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    *,
    overwrite: bool = False,
    plot: bool = True,
    run_args: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
    on_step: Callable[[int, float, nn.Module], None] | None = None,
) -> TrainResult:
    """Train (or with ``resume`` continue) a model on a corpus; write checkpoints to ``out_dir``.

    ``corpus`` is a corpus folder (or an open ``Corpus``). With ``resume`` the run continues from
    ``out_dir/last`` exactly; ``config`` then defaults to the stored one (pass one to change e.g.
    ``max_steps``; the architecture cannot change). Without ``resume`` an ``out_dir`` that already holds a
    run is refused unless ``overwrite``. ``progress`` shows a tqdm bar and messages on stderr (``log``
    receives the messages instead, if given); ``plot`` redraws ``loss.png`` at every evaluation;
    ``run_args`` (e.g. the command line) is stored in the checkpoints; ``on_step(step, train_loss,
    model)`` is called after every step. Raises ``ComposerError`` subclasses for anything a user can fix.
    """
    # the process group's backend follows the device: on resume without a config, the stored one's
    device_config = config or (load_train_config(out_dir) if resume else None) or TrainConfig()
    dist_info = setup_distributed(device_config.device)
    # one run per folder: a second run (or a corpus build) pointed here fails at once with a clear error
    lock = folder_lock(Path(out_dir), "training run") if dist_info.is_main else contextlib.nullcontext()
    try:
        with lock:
            return _train(
                corpus,
                Path(out_dir),
                config,
                resume=resume,
                progress=progress,
                overwrite=overwrite,
                plot=plot,
                run_args=run_args,
                log=log,
                on_step=on_step,
                dist_info=dist_info,
            )
    finally:
        if dist_info.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _open_corpus(corpus: Any) -> Any:
    if isinstance(corpus, str | os.PathLike):
        from composer.corpus import Corpus

        return Corpus.open(corpus)
    return corpus


def _existing_run(
    corpus: Any,
    run_dir: Path,
    config: TrainConfig | None,
    resume: bool,
    overwrite: bool,
    dist_info: DistInfo,
    say: Callable[[str], None],
) -> tuple[RawCheckpoint | None, TrainConfig]:
    """The checkpoint to resume from (checked against the corpus) and the config to run with."""
    last_path = find_last(run_dir)
    if not resume:
        if last_path is not None or (run_dir / BEST).exists():
            if not overwrite:
                raise ComposerError(f"{run_dir} already holds a training run; pass --resume to continue it")
            if dist_info.is_main:
                import shutil

                for name in (LAST, BEST, f".{LAST}.old", f".{BEST}.old"):
                    shutil.rmtree(run_dir / name, ignore_errors=True)
                for name in (METRICS_FILE, PLOT_FILE):
                    (run_dir / name).unlink(missing_ok=True)
        return None, config or TrainConfig()
    if last_path is None:
        say(f"nothing to resume in {run_dir}; starting a new run")
        return None, config or TrainConfig()
    raw = read_checkpoint(last_path, prefer=LAST)
    vocab = list(corpus.tokenizer.vocab.tokens)
    if list(raw.meta["vocab"]) != vocab:
        raise CheckpointError(
            f"{raw.path}: its vocabulary ({len(raw.meta['vocab'])} tokens) does not match corpus "
            f"{corpus.path} ({len(vocab)} tokens); resume with the corpus it was trained on"
        )
    if raw.meta.get("tokenizer_config") != corpus.tokenizer.config.to_dict():
        raise CheckpointError(f"{raw.path}: tokenizer config differs from corpus {corpus.path}")
    if config is None:
        try:
            config = TrainConfig.from_dict(raw.meta["train_config"])
        except (ConfigError, KeyError, TypeError) as e:
            raise CheckpointError(f"{raw.path}: bad train config ({e})") from None
    return raw, config


def _corpus_meta(corpus: Any) -> dict[str, Any]:
    """What a checkpoint remembers of its corpus (generation uses programs and note density)."""
    pieces = corpus.pieces("train") + corpus.pieces("val")
    meta: dict[str, Any] = {
        "path": str(corpus.path),
        "fingerprint": corpus.fingerprint,
        "content_fingerprint": corpus.content_fingerprint,
        "val_fraction": corpus.val_fraction,
        "pieces": len(pieces),
        "notes": sum(int(p.notes) for p in pieces),
    }
    if pieces and all(hasattr(p, "programs") for p in pieces):
        meta["programs"] = sorted({int(x) for p in pieces for x in p.programs})
    seconds = sum(float(getattr(p, "seconds", 0.0)) for p in pieces)
    if seconds > 0:
        meta["notes_per_second"] = meta["notes"] / seconds
    return meta


def _same_data(where: Path, saved: dict[str, Any], corpus: Any, trained_pieces: int) -> bool:
    """Whether ``corpus`` holds exactly the data a checkpoint was trained on, so its data order resumes.

    ``saved`` is the checkpoint's corpus metadata, ``trained_pieces`` the number of training pieces its
    data order covers. Raises ``CheckpointError`` when the train/validation split is not the run's (the run
    would train on its validation pieces) or, for a checkpoint that predates split fingerprints, cannot be
    checked. Other content (files added or removed) under the same split rule returns False.
    """
    if saved.get("fingerprint") == corpus.fingerprint:
        return True
    older = "content_fingerprint" not in saved  # then its "fingerprint" covered the content only
    content = saved.get("fingerprint") if older else saved.get("content_fingerprint")
    then, now = saved.get("val_fraction"), corpus.val_fraction
    if content == corpus.content_fingerprint:
        # The same pieces. The split puts a piece in validation when its content hash falls under one
        # threshold, so of two splits of the same pieces one's validation set contains the other's: equal
        # counts mean equal splits (how a checkpoint without a split fingerprint is checked).
        if older and trained_pieces == len(corpus.pieces("train")):
            return True
    elif older:
        raise CheckpointError(
            f"{where}: corpus {corpus.path} has changed since this checkpoint, which predates split "
            "fingerprints, so its train/validation split cannot be checked; rebuild the corpus from the "
            "files and --val-fraction the run was trained on, or start a new run with --overwrite"
        )
    elif then == now:
        return False  # other pieces, each in the split its content hash gives under the same fraction
    if then is not None and then != now:
        detail, fix = f"val fraction {then:g} then, {now:g} now", f"rebuild it with --val-fraction {then:g}"
    else:
        detail = f"{trained_pieces} train pieces then, {len(corpus.pieces('train'))} now"
        fix = "rebuild it with the --val-fraction the run was trained on"
    raise CheckpointError(
        f"{where}: corpus {corpus.path} has another train/validation split than this run was trained on "
        f"({detail}), so resuming would train on validation pieces; {fix}, or start a new run with "
        "--overwrite"
    )


@dataclass
class StepStats:
    loss: float  # mean train loss over this step's real target tokens (all processes), nats/token
    grad_norm: float  # before clipping
    tokens: int  # real target tokens (all processes)
    stop_votes: float  # processes that asked to stop (Ctrl-C, time budget)
    skipped: bool  # non-finite: no optimizer update


class _Run:
    """What one training invocation holds: data streams, model, optimizer, carried state, counters.

    ``_train`` below is the loop; this class gives it its steps (``train_step``, ``evaluate``, ``save``).
    """

    def __init__(
        self,
        corpus: Any,
        run_dir: Path,
        config: TrainConfig,
        raw: RawCheckpoint | None,
        dist_info: DistInfo,
        run_args: dict[str, Any] | None,
        say: Callable[[str], None],
    ) -> None:
        self.corpus, self.run_dir, self.config, self.dist = corpus, run_dir, config, dist_info
        self.tok = tok = corpus.tokenizer
        # ---- device, threads, precision
        set_threads(config.num_threads)
        self.device = device = resolve_device(
            config.device, dist_info.local_rank if dist_info.enabled else None
        )
        self.dtype = amp_dtype(device, config.amp)
        self.scaler = make_grad_scaler(device, self.dtype)

        # ---- data: this process's share of the pieces, on the device
        self.train_pieces = [
            p for p in corpus.pieces("train")[dist_info.rank :: dist_info.world_size] if p.length >= 2
        ]
        self.val_pieces = corpus.pieces("val")[dist_info.rank :: dist_info.world_size]
        if not self.train_pieces:
            where = f" for process {dist_info.rank} of {dist_info.world_size}" if dist_info.enabled else ""
            raise CorpusError(f"{corpus.path}: no training pieces{where}")
        train_store = TokenStore(corpus.tokens, self.train_pieces, device, tok, drums=config.transpose > 0)
        self.val_store = TokenStore(corpus.tokens, self.val_pieces, device, keep_host=True)
        augmenter = Augmenter(tok, config, train_store, device)
        data_rng = np.random.default_rng([config.seed, dist_info.rank])
        self.stream = PieceStream(
            train_store.lengths,
            config.batch_size,
            config.window,
            rng=data_rng,
            loop=True,
            sample_aug=lambda piece: augmenter.sample(data_rng, piece),
        )
        self.batcher = Batcher(train_store, config.window, int(tok.pad_id), augmenter)

        # ---- model and optimizer (torch: seed before the model is built, seed + rank after)
        torch.manual_seed(config.seed)
        self.model_config = config.model_config(tok.vocab.size)
        if raw is not None:
            self.model, saved = model_from_raw(raw, device)
            if saved != self.model_config:
                raise ConfigError(
                    f"the architecture cannot change on --resume: {raw.path} has {saved.to_dict()}, "
                    f"the config asks for {self.model_config.to_dict()}"
                )
        else:
            self.model = LSTMModel(self.model_config).to(device)
        if dist_info.rank:
            torch.manual_seed(config.seed + dist_info.rank)  # different dropout masks per process
        self.optimizer = make_optimizer(self.model, config, device)
        self.ddp: nn.Module = self.model
        self.music_reference: Any = None  # validation pieces' music features, computed on first use
        if dist_info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.params = [p for p in self.model.parameters() if p.requires_grad]

        # ---- counters and carried state (restored on resume)
        self.step = 0
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.last_eval: EvalResult | None = None
        self.evals_since_best = 0
        self.bad_streak = 0
        self.skipped = 0
        self.elapsed_before = 0.0  # wall-clock seconds of the invocations this one continues
        self.started = time.perf_counter()
        self.schedule = initial_schedule(config)
        self.state: State = self.model.init_state(config.batch_size, device)
        if raw is not None:
            self._restore(raw, say)
        self.base_meta = {
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "composer_version": __version__,
            "model_config": self.model_config.to_dict(),
            "tokenizer_config": tok.config.to_dict(),
            "vocab": list(tok.vocab.tokens),
            "corpus": _corpus_meta(corpus),
            "train_config": config.to_dict(),
            "args": run_args or {},
            # torch: manual_seed(seed), then seed + rank after the model is built; numpy data order and
            # augmentation: default_rng([seed, rank]). Their exact current states are in train_state.
            "seeds": {"seed": config.seed},
        }

    def _restore(self, raw: RawCheckpoint, say: Callable[[str], None]) -> None:
        self.step = int(raw.meta["step"])
        self.best_val = raw.meta.get("best_val_loss")
        self.best_step = raw.meta.get("best_step")
        try:
            ts = join_tensors(raw.meta["train_state"], raw.state_tensors())
            load_optimizer_state(self.optimizer, optimizer_state_from_json(ts["optimizer"]))
            if self.scaler is not None and ts.get("scaler"):
                self.scaler.load_state_dict(ts["scaler"])
            self.evals_since_best = int(ts["evals_since_best"])
            self.skipped = int(ts["skipped_steps"])
            self.elapsed_before = float(ts.get("elapsed_s", 0.0))
            streams = ts["streams"]
            why = None
            saved_config = raw.meta.get("train_config", {})
            old = TrainConfig.from_dict(saved_config)
            saved = ts.get("lr_schedule")  # absent in checkpoints written before schedules were saved
            schedule = [LRSegment.from_dict(s) for s in saved] if saved else initial_schedule(old)
            self.schedule = extend_schedule(schedule, self.step, old, self.config)
            if self.schedule != schedule:
                seg, now = self.schedule[-1], get_lr(self.step, self.config, self.schedule)
                say(f"learning rate from step {self.step}: {now:.3g}, to {seg.final:.3g} at step {seg.end}")
            trained = sum(len(s["data"]["order"]) for s in streams)
            if not _same_data(raw.path, raw.meta.get("corpus") or {}, self.corpus, trained):
                why = "the corpus changed"
            elif saved_config.get("batch_size") != self.config.batch_size:
                why = "the batch size changed"
            elif len(streams) != self.dist.world_size:
                why = "the number of processes changed"
            elif any(saved_config.get(k) != getattr(self.config, k) for k in AUGMENTATION_FIELDS):
                why = "the augmentation settings changed"  # the rows' saved draws index the old tables
            if why is None:
                mine = streams[self.dist.rank]
                self.stream.load_state_dict(mine["data"])
                h, c = mine["lstm_state"]
                self.state = (h.to(self.device).float(), c.to(self.device).float())
                _restore_rng(mine["rng"], self.device)
            else:
                say(f"{why}: weights and optimizer resume at step {self.step}, the data order starts afresh")
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{raw.path}: cannot restore the training state ({e!r:.200})") from None
        say(f"resuming {self.run_dir} at step {self.step}")

    def describe(self) -> str:
        c, m = self.config, self.model_config
        return (
            f"training {self.model.num_parameters():,} parameters ({c.preset}: {m.num_layers} x "
            f"{m.hidden_size}) on {describe(self.device)}"
            + (f" x {self.dist.world_size} processes" if self.dist.enabled else "")
            + (f", {self.dtype} autocast" if self.dtype is not None else "")
            + f"; {len(self.train_pieces)} train / {len(self.val_pieces)} val pieces"
        )

    def train_step(self, lr: float, stop_vote: Callable[[], bool]) -> StepStats:
        """One optimizer step over ``grad_accum`` windows of every row; skipped if the loss is not finite.

        ``stop_vote()`` is asked once the gradients are in and summed over processes with the loss, so all
        processes agree on stopping after this step."""
        config, device, scaler = self.config, self.device, self.scaler
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        plans = [self.stream.next() for _ in range(config.grad_accum)]
        n_targets = sum(int(p.n_valid.sum()) for p in plans)  # known before any forward: exact token mean
        denom: torch.Tensor | int = max(n_targets, 1)
        if self.dist.enabled:
            # The mean over every process's targets: DDP averages the processes' gradients, so each divides
            # its sum by the global count over the process count (its own count would give a target on a
            # process with more padding more weight). A device tensor, so no host sync before the forward.
            count = all_reduce_sum(torch.tensor(float(n_targets), device=device), self.dist)
            denom = count.clamp_min(1.0) / self.dist.world_size
        nll_sum = torch.zeros((), device=device)
        for i, plan in enumerate(plans):
            inputs, targets, keep = self.batcher.gather(plan)
            self.state = reset_rows(self.state, keep)  # rows starting a piece forget the previous one
            no_sync = self.dist.enabled and i < len(plans) - 1  # DDP: all-reduce on the last window only
            with self.ddp.no_sync() if no_sync else contextlib.nullcontext():  # type: ignore[operator]
                with autocast(device, self.dtype):
                    logits, state = self.ddp(inputs, self.state)
                    nll = F.cross_entropy(
                        logits.reshape(-1, logits.size(-1)).float(),  # (B, T, V) -> (B*T, V)
                        targets.reshape(-1),  # (B, T) -> (B*T,)
                        ignore_index=int(self.tok.pad_id),
                        reduction="sum",
                    )
                loss = nll / denom
                (scaler.scale(loss) if scaler is not None else loss).backward()
            self.state = detach_state(state)  # carried into the next window, without its graph
            nll_sum += nll.detach()

        if scaler is not None:
            scaler.unscale_(self.optimizer)
        if config.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip)
        else:
            grad_norm = torch.zeros((), device=device)
        counts = torch.tensor([float(n_targets), float(stop_vote())], device=device)
        stats = torch.cat([nll_sum.float().reshape(1), counts])  # (3,): nll, targets, stop votes
        stats = all_reduce_sum(stats, self.dist)
        total_nll, total_targets, stop_votes = stats.tolist()  # the one host sync per step
        gnorm = float(grad_norm)
        train_loss = total_nll / max(total_targets, 1.0)

        finite = math.isfinite(train_loss) and (scaler is not None or math.isfinite(gnorm))
        if finite:
            if scaler is not None:
                scaler.step(self.optimizer)  # skips by itself if fp16 gradients overflowed
                scaler.update()
            else:
                self.optimizer.step()
            self.bad_streak = 0
        else:
            if scaler is not None:
                scaler.update()  # closes this step's unscale_ bookkeeping
            self.bad_streak += 1
            self.skipped += 1
            self.state = self.model.init_state(config.batch_size, device)  # a NaN state must not linger
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return StepStats(train_loss, gnorm, int(total_targets), stop_votes, not finite)

    def music_stats(self) -> dict[str, float]:
        """Yang & Lerch statistics of a few sampled songs against the validation pieces (rank 0, if asked)."""
        if not self.config.music_samples or not self.dist.is_main:
            return {}
        from composer.evaluate import reference_features, sampled_music_stats

        if self.music_reference is None:
            self.music_reference = reference_features(self.corpus, "val", limit=64)
        stats = sampled_music_stats(
            self.model, self.tok, self.music_reference, n=self.config.music_samples, seed=self.config.seed,
            device=self.device,
        )  # fmt: skip
        keys = ("mean_oa", "mean_kl", "repeated_bars", "degenerate_rate")
        return {f"music_{k}": stats[k] for k in keys if k in stats}

    def evaluate(self) -> EvalResult | None:
        c = self.config
        return evaluate(
            self.model,
            self.val_store,
            self.tok,
            c.batch_size,
            c.window,
            c.eval_batches,
            self.dtype,
            self.dist,
        )

    def save(self, names: tuple[str, ...]) -> None:
        """Write the checkpoints ``names`` (process 0; every process contributes its data position)."""
        mine = {
            "data": self.stream.state_dict(),
            "lstm_state": [self.state[0].detach().float().cpu(), self.state[1].detach().float().cpu()],
            "rng": _rng_tensors(self.device),
        }
        streams: list[Any] | None = [mine]
        if self.dist.enabled:
            import torch.distributed as dist

            streams = [None] * self.dist.world_size if self.dist.is_main else None
            dist.gather_object(mine, streams, dst=0)
        if not self.dist.is_main:
            return
        tensors: dict[str, torch.Tensor] = {}
        train_state = {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "evals_since_best": self.evals_since_best,
            "skipped_steps": self.skipped,
            "elapsed_s": self.elapsed_s,
            "lr_schedule": [seg.to_dict() for seg in self.schedule],
            "streams": streams,
        }
        meta = {
            **self.base_meta,
            "step": self.step,
            "best_val_loss": self.best_val,
            "best_step": self.best_step,
            "val_loss": None if self.last_eval is None else self.last_eval.loss,
            "val_nats_per_note": None if self.last_eval is None else self.last_eval.nats_per_note,
            "world_size": self.dist.world_size,
            "train_state": split_tensors(train_state, "", tensors),
        }
        for name in names:
            write_checkpoint(self.run_dir / name, self.model.state_dict(), tensors, meta)

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started


def _train(
    corpus_arg: Any,
    run_dir: Path,
    config: TrainConfig | None,
    *,
    resume: bool,
    progress: bool,
    overwrite: bool,
    plot: bool,
    run_args: dict[str, Any] | None,
    log: Callable[[str], None] | None,
    on_step: Callable[[int, float, nn.Module], None] | None,
    dist_info: DistInfo,
) -> TrainResult:
    from tqdm.auto import tqdm

    is_main = dist_info.is_main

    def say(msg: str) -> None:
        if is_main and log is not None:
            log(msg)
        elif is_main and progress:
            tqdm.write(msg, file=sys.stderr)

    corpus = _open_corpus(corpus_arg)
    raw, config = _existing_run(corpus, run_dir, config, resume, overwrite, dist_info, say)
    with out_of_memory_as(_oom_message(config)):  # the data and the model go to the device here
        run = _Run(corpus, run_dir, config, raw, dist_info, run_args, say)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    metrics = MetricsLog(run_dir / METRICS_FILE, is_main, keep_through_step=run.step)
    if run.step == 0:
        say(run.describe())

    stop_reason = "max_steps"
    t_start = time.perf_counter()

    def out_of_time() -> bool:
        return config.max_minutes is not None and time.perf_counter() - t_start >= config.max_minutes * 60

    train_time, real_tokens, positions = 0.0, 0, 0
    losses: list[float] = []
    ema_tps: float | None = None
    pbar = tqdm(
        total=config.max_steps,
        initial=min(run.step, config.max_steps),
        disable=not (progress and is_main),
        unit="step",
        dynamic_ncols=True,
        file=sys.stderr,
    )
    run.model.train()
    stopper = _GracefulStop(enabled=not dist_info.enabled)
    try:
        with stopper, out_of_memory_as(_oom_message(config)):
            while run.step < config.max_steps:
                t0 = time.perf_counter()
                lr = get_lr(run.step, config, run.schedule)
                s = run.train_step(lr, stop_vote=lambda: stopper.requested or (is_main and out_of_time()))
                dt = time.perf_counter() - t0
                train_time += dt
                real_tokens += s.tokens
                positions += config.batch_size * config.window * config.grad_accum * dist_info.world_size
                tps = s.tokens / dt if dt > 0 else 0.0
                ema_tps = tps if ema_tps is None else 0.9 * ema_tps + 0.1 * tps
                losses.append(s.loss)
                if on_step is not None:
                    on_step(run.step, s.loss, run.model)
                row: dict[str, Any] = {
                    "step": run.step,
                    "elapsed_s": round(run.elapsed_s, 3),
                    "lr": lr,
                    "train_loss": s.loss,
                    "grad_norm": s.grad_norm if config.grad_clip > 0 else None,
                    "tokens_per_s": round(tps, 1),
                    "skipped": run.skipped,
                }
                if run.bad_streak >= config.max_bad_steps:
                    metrics.write(row)
                    kept = find_last(run_dir)
                    raise ComposerError(
                        f"training diverged: {run.bad_streak} steps in a row had a non-finite loss "
                        f"(step {run.step}); "
                        + (f"the last good checkpoint is {kept}; " if kept else "")
                        + "try a lower --lr"
                    )

                final = s.stop_votes > 0 or run.step >= config.max_steps
                if s.stop_votes > 0:
                    stop_reason = "interrupted" if stopper.requested else "max_minutes"
                if run.step % config.eval_every == 0 or final:
                    result = run.evaluate()
                    names: tuple[str, ...] = ()
                    if result is not None:
                        run.last_eval = result
                        row["val_loss"], row["val_nats_per_note"] = result.loss, result.nats_per_note
                        row.update(run.music_stats())
                        if math.isfinite(result.loss) and (
                            run.best_val is None or result.loss < run.best_val
                        ):
                            run.best_val, run.best_step, run.evals_since_best = result.loss, run.step, 0
                            names = (BEST,)
                        else:
                            run.evals_since_best += 1
                        if config.patience and run.evals_since_best >= config.patience and not final:
                            stop_reason, final = "early_stop", True
                        say(
                            f"step {run.step}: train {s.loss:.4f}  val {result.loss:.4f} nats/token, "
                            f"{result.nats_per_note:.3f} nats/note" + ("  (best)" if names else "")
                        )
                    metrics.write(row)
                    if run.bad_streak == 0:  # never overwrite a good checkpoint with a diverging state
                        run.save((*names, LAST))
                    if is_main and plot:
                        plot_metrics(run_dir / METRICS_FILE, run_dir / PLOT_FILE, title=run_dir.name)
                else:
                    metrics.write(row)
                pbar.set_postfix(loss=f"{s.loss:.3f}", tok_s=f"{ema_tps:,.0f}", refresh=False)
                pbar.update(1)
                if final:
                    break
    finally:
        pbar.close()
        metrics.close()

    if stop_reason == "interrupted":
        say(f"interrupted at step {run.step}; continue with --resume")
    return TrainResult(
        steps=run.step,
        best_val_loss=run.best_val,
        best_step=run.best_step,
        val_loss=None if run.last_eval is None else run.last_eval.loss,
        val_nats_per_note=None if run.last_eval is None else run.last_eval.nats_per_note,
        last_path=find_last(run_dir) if is_main else None,
        best_path=run_dir / BEST if is_main and (run_dir / BEST).is_dir() else None,
        run_dir=run_dir,
        stop_reason=stop_reason,
        tokens_per_s=real_tokens / train_time if train_time > 0 else 0.0,
        positions_per_s=positions / train_time if train_time > 0 else 0.0,
        elapsed_s=time.perf_counter() - t_start,
        skipped_steps=run.skipped,
        train_losses=losses,
    )
