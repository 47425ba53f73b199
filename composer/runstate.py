"""A training run's resumable state: the learning-rate schedule, the run folder (locked for the run by
``run_session``), save and restore.

Everything that decides the next step (weights aside: optimizer moments, loss scale, every row's piece,
cursor, carried LSTM state and augmentation, the shuffled order, the RNG states, the schedule and the
counters) is in ``RunState``, and ``RunState.save`` writes it with the weights into the run folder's
``last``/``best`` checkpoints (``composer.checkpoint``). ``RunState.restore`` puts it back, so a resumed run
continues exactly where it stopped: on the CPU its loss curve equals the uninterrupted one. On a GPU it
continues the same run but not bit for bit: cuDNN draws the LSTM's between-layer dropout masks from its
own random state, which is not saved.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from composer import __version__
from composer.batching import PieceStream
from composer.checkpoint import (
    BEST,
    LAST,
    METRICS_FILE,
    PLOT_FILE,
    RawCheckpoint,
    find_last,
    join_tensors,
    optimizer_state_from_json,
    read_checkpoint,
    split_tensors,
    write_checkpoint,
)
from composer.distributed import DistInfo, process_group
from composer.errors import CheckpointError, ComposerError, ConfigError
from composer.fsutil import folder_lock
from composer.model import ModelConfig, State
from composer.nll import Validation
from composer.train_config import AUGMENTATION_FIELDS, TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from os import PathLike

    from composer.corpus import Corpus
    from composer.tokenizer import Tokenizer

# -------------------------------------------------------------------------------- learning-rate schedule


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


# -------------------------------------------------------------------------------------- the run folder


def _stored_config(raw: RawCheckpoint) -> TrainConfig:
    try:
        return TrainConfig.from_dict(raw.meta["train_config"])
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{raw.path}: bad train config ({e})") from None


def load_train_config(run_dir: str | PathLike[str]) -> TrainConfig | None:
    """The training config stored in a run folder's ``last`` checkpoint (for ``--resume``), if any."""
    last = find_last(run_dir)
    return None if last is None else _stored_config(read_checkpoint(last, prefer=LAST))


def existing_run(
    corpus: Corpus,
    run_dir: Path,
    config: TrainConfig | None,
    *,
    resume: bool,
    overwrite: bool,
    is_main: bool,
    say: Callable[[str], None],
) -> tuple[RawCheckpoint | None, TrainConfig]:
    """The checkpoint to resume from (checked against the corpus) and the config to run with.

    Without ``resume`` a folder that holds a run is refused, or with ``overwrite`` cleared (by process 0).
    """
    last_path = find_last(run_dir)
    if not resume:
        if last_path is not None or (run_dir / BEST).exists():
            if not overwrite:
                raise ComposerError(f"{run_dir} already holds a training run; pass --resume to continue it")
            if is_main:
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
    if list(raw.meta["vocab"])[: len(vocab)] != vocab:  # a conditioned model's appends its conditions
        raise CheckpointError(
            f"{raw.path}: its vocabulary ({len(raw.meta['vocab'])} tokens) does not match corpus "
            f"{corpus.path} ({len(vocab)} tokens); resume with the corpus it was trained on"
        )
    if raw.meta.get("tokenizer_config") != corpus.tokenizer.config.to_dict():
        raise CheckpointError(f"{raw.path}: tokenizer config differs from corpus {corpus.path}")
    return raw, config if config is not None else _stored_config(raw)


def corpus_meta(corpus: Corpus) -> dict[str, Any]:
    """What a checkpoint remembers of its corpus: where it was, its fingerprints (``same_data`` checks
    them on resume) and ``Corpus.statistics()`` (generation reads its programs and note density)."""
    return {
        "path": str(corpus.path),
        "fingerprint": corpus.fingerprint,
        "content_fingerprint": corpus.content_fingerprint,
        "val_fraction": corpus.val_fraction,
        **corpus.statistics(),
    }


def run_meta(
    config: TrainConfig,
    model_config: ModelConfig,
    corpus: Corpus,
    run_args: dict[str, Any] | None,
    tok: Tokenizer | None = None,
) -> dict[str, Any]:
    """What every checkpoint of one training invocation says about it (``RunState.save`` adds the rest).

    ``tok``: the tokenizer the model reads (the corpus's, with the run's conditions appended)."""
    tok = tok if tok is not None else corpus.tokenizer
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "composer_version": __version__,
        "model_config": model_config.to_dict(),
        "tokenizer_config": tok.config.to_dict(),
        "vocab": list(tok.vocab.tokens),
        "conditions": None if tok.conditions is None else tok.conditions.to_dict(),
        "corpus": corpus_meta(corpus),
        "train_config": config.to_dict(),
        "args": run_args or {},
        # torch: manual_seed(seed), then seed + rank after the model is built; numpy data order and
        # augmentation: default_rng([seed, rank]). Their exact current states are in train_state.
        "seeds": {"seed": config.seed},
    }


def same_data(where: Path, saved: dict[str, Any], corpus: Corpus, trained_pieces: int) -> bool:
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


@contextlib.contextmanager
def run_session(run_dir: Path, config: TrainConfig | None, resume: bool) -> Iterator[DistInfo]:
    """Join the process group under torchrun and (process 0) lock the run folder, for one run."""
    # the process group's backend follows the device: on resume without a config, the stored one's
    device_config = config or (load_train_config(run_dir) if resume else None) or TrainConfig()
    with process_group(device_config.device) as dist_info, _lock(run_dir, dist_info.is_main):
        yield dist_info


def _lock(run_dir: Path, is_main: bool) -> contextlib.AbstractContextManager[object]:
    """One run per folder: a second run (or a corpus build) pointed here fails at once, clearly."""
    return folder_lock(run_dir, "training run") if is_main else contextlib.nullcontext()


# ------------------------------------------------------------------------------------ the state itself


@dataclass
class RunState:
    """What a run carries from one optimizer step to the next, besides the weights; saved and restored.

    ``stream`` is this process's data position, ``carry`` its rows' LSTM state (float32, carried across
    windows). The counters below it count optimizer steps and validations over every invocation of the run,
    except ``bad_streak`` (non-finite steps in a row in this invocation).
    """

    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    stream: PieceStream
    carry: State
    schedule: list[LRSegment]
    device: torch.device
    dist: DistInfo
    step: int = 0
    best_val: float | None = None  # nats/token
    best_step: int | None = None
    last_eval: Validation | None = None
    evals_since_best: int = 0
    bad_streak: int = 0
    skipped: int = 0
    elapsed_before: float = 0.0  # wall-clock seconds of the invocations this one continues
    started: float = field(default_factory=time.perf_counter)

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def record(self, result: Validation) -> bool:
        """Count a validation; True if it is the best so far (a new ``best`` checkpoint)."""
        self.last_eval = result
        if math.isfinite(result.loss) and (self.best_val is None or result.loss < self.best_val):
            self.best_val, self.best_step, self.evals_since_best = result.loss, self.step, 0
            return True
        self.evals_since_best += 1
        return False

    def restore(
        self, raw: RawCheckpoint, config: TrainConfig, corpus: Corpus, say: Callable[[str], None]
    ) -> None:
        """Continue the run saved in ``raw`` under ``config``: counters, optimizer, loss scale, schedule, and,
        unless the data or its augmentation changed, this process's data position, carried state and RNG."""
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
            saved_config = raw.meta.get("train_config", {})
            old = TrainConfig.from_dict(saved_config)
            saved = ts.get("lr_schedule")  # absent in checkpoints written before schedules were saved
            schedule = [LRSegment.from_dict(s) for s in saved] if saved else initial_schedule(old)
            self.schedule = extend_schedule(schedule, self.step, old, config)
            if self.schedule != schedule:
                seg, now = self.schedule[-1], get_lr(self.step, config, self.schedule)
                say(f"learning rate from step {self.step}: {now:.3g}, to {seg.final:.3g} at step {seg.end}")
            why = None
            trained = sum(len(s["data"]["order"]) for s in streams)
            if not same_data(raw.path, raw.meta.get("corpus") or {}, corpus, trained):
                why = "the corpus changed"
            elif saved_config.get("batch_size") != config.batch_size:
                why = "the batch size changed"
            elif len(streams) != self.dist.world_size:
                why = "the number of processes changed"
            elif any(saved_config.get(k) != getattr(config, k) for k in AUGMENTATION_FIELDS):
                why = "the augmentation settings changed"  # the rows' saved draws index the old tables
            if why is None:
                mine = streams[self.dist.rank]
                self.stream.load_state_dict(mine["data"])
                saved = tuple(t.to(self.device).float() for t in mine["lstm_state"])
                if [t.shape for t in saved] != [t.shape for t in self.carry]:
                    raise ValueError(f"carried state of shapes {[tuple(t.shape) for t in saved]}")
                self.carry = saved
                restore_rng(mine["rng"], self.device)
            else:
                say(f"{why}: weights and optimizer resume at step {self.step}, the data order starts afresh")
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{raw.path}: cannot restore the training state ({e!r:.200})") from None

    def save(self, run_dir: Path, names: tuple[str, ...], model: nn.Module, meta: dict[str, Any]) -> None:
        """Write checkpoints ``names`` into ``run_dir``: ``model``'s weights, this state and ``meta``.

        Every process contributes its data position, carried state and RNG; process 0 writes."""
        mine = {
            "data": self.stream.state_dict(),
            "lstm_state": [t.detach().float().cpu() for t in self.carry],
            "rng": rng_tensors(self.device),
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
            **meta,
            "step": self.step,
            "best_val_loss": self.best_val,
            "best_step": self.best_step,
            "val_loss": None if self.last_eval is None else self.last_eval.loss,
            "val_nats_per_note": None if self.last_eval is None else self.last_eval.nats_per_note,
            "world_size": self.dist.world_size,
            "train_state": split_tensors(train_state, "", tensors),
        }
        for name in names:
            write_checkpoint(run_dir / name, model.state_dict(), tensors, meta)


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases).

    The fused kernel on CUDA and the CPU, where torch's default is a slower per-tensor loop (README,
    Benchmarks: training).
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


def rng_tensors(device: torch.device) -> dict[str, torch.Tensor]:
    out = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["torch_cuda"] = torch.cuda.get_rng_state(device)
    return out


def restore_rng(saved: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(saved["torch_cpu"].to(torch.uint8))
    if device.type == "cuda" and "torch_cuda" in saved:
        torch.cuda.set_rng_state(saved["torch_cuda"].to(torch.uint8), device)
