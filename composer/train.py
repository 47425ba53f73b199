"""Training: one readable loop, in the spirit of nanoGPT, for the LSTM in ``composer.model``.

How the data flows
------------------
``batch_size`` rows each stream through a piece, ``window`` tokens at a time (truncated backpropagation
through time). With 3 rows, a window of 4 and pieces A (10 tokens), B (6), C (13), D, E, F, ...::

               window 1         window 2         window 3         window 4
    row 0   0| A0 A1 A2 A3 |>| A4 A5 A6 A7 |>| A8 .  .  .  |0| D0 D1 D2 D3 |> ...
    row 1   0| B0 B1 B2 B3 |>| B4 .  .  .  |0| E0 E1 E2 E3 |>| E4 E5 E6 E7 |> ...
    row 2   0| C0 C1 C2 C3 |>| C4 C5 C6 C7 |>| C8 C9 C. C. |0| F0 F1 F2 F3 |> ...

Each column is one batch of inputs, (batch, window); its targets are the same rows one token later (A1..A4
under A0..A3). ``.`` is PAD: a window never spans two pieces, so a piece's last window is padded, and PAD
targets count nothing. ``>`` carries a row's LSTM state (detached) into its next window, ``0`` zeroes it
where the row starts its next piece (from a shuffled order, reshuffled every epoch). The pieces live in one
token tensor on the device, each row draws an augmentation per piece, and batches are gathered by index
arithmetic: ``composer.batching`` has all of that.

This module is the loop (``train``): learning rate, optimizer step over ``grad_accum`` windows, gradient
clipping, a NaN guard, validation (``composer.nll.validate``), checkpoints, metrics. What a resumed run needs
(optimizer, data position, carried state, RNG, schedule, counters) is in ``composer.runstate``: a run
stopped at any moment, even by SIGKILL, continues exactly.

Under ``torchrun`` (RANK/WORLD_SIZE set) the same ``train()`` runs DistributedDataParallel
(``composer.distributed``): every process streams its own share of the pieces, validation losses are summed
over processes, and process 0 alone writes checkpoints, metrics (``composer.metrics``) and plots.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import torch
from torch import nn

from composer.batching import Augmenter, Batcher, PieceStream, TokenStore, streams
from composer.checkpoint import (
    BEST,
    LAST,
    METRICS_FILE,
    PLOT_FILE,
    RawCheckpoint,
    conditions_from_meta,
    find_last,
    fit_checkpoint_cache,
    model_from_raw,
)
from composer.corpus import Corpus
from composer.device import (
    amp_dtype,
    autocast,
    describe,
    make_grad_scaler,
    out_of_memory_as,
    resolve_device,
    set_threads,
)
from composer.distributed import DistInfo, all_reduce_sum
from composer.errors import ComposerError, ConfigError, CorpusError
from composer.metrics import MetricsLog, Throughput, plot_metrics
from composer.model import LSTMModel, ModelConfig, cell_excess, detach_state, reset_rows
from composer.musicstats import FeatureSet, music_stats_summary
from composer.nll import Validation, validate, window_nll
from composer.runstate import (
    RunState,
    existing_run,
    get_lr,
    initial_schedule,
    make_optimizer,
    run_meta,
    run_session,
)
from composer.sample import Length, sample_ids
from composer.train_config import TrainConfig

if TYPE_CHECKING:  # pragma: no cover
    from tqdm.auto import tqdm

    from composer.tokenizer import Tokenizer

#: Validation pieces whose music the sampled songs are compared with (``TrainConfig.music_samples``).
MUSIC_REFERENCE_PIECES = 64
#: Seconds of music in each song sampled for the music statistics.
MUSIC_SECONDS = 20.0


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


@dataclass
class StepStats:
    loss: float  # mean train loss over this step's real target tokens (all processes), nats/token
    grad_norm: float  # before clipping
    tokens: int  # real target tokens (all processes)
    stop_votes: float  # processes that asked to stop (Ctrl-C, time budget)
    skipped: bool  # non-finite: no optimizer update


# ------------------------------------------------------------------------------------------- train


def train(
    corpus: str | os.PathLike[str] | Corpus,
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
    # The loop is kept whole, top to bottom: lr -> step (micro-steps, clip, update) -> log -> validate and
    # checkpoint. The step itself is ``_Run.train_step``.
    run_dir = Path(out_dir)
    with run_session(run_dir, config, resume) as dist_info:
        is_main = dist_info.is_main
        say = _messenger(is_main, progress, log)
        corpus = Corpus.open(corpus) if isinstance(corpus, str | os.PathLike) else corpus
        raw, config = existing_run(
            corpus, run_dir, config, resume=resume, overwrite=overwrite, is_main=is_main, say=say
        )
        oom = _oom_message(config)
        with out_of_memory_as(oom):  # the data and the model go to the device here
            run = _Run(corpus, run_dir, config, raw, dist_info, run_args, say)
        st = run.state
        if is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        metrics = MetricsLog(run_dir / METRICS_FILE, is_main, keep_through_step=st.step)
        if st.step == 0:
            say(run.describe())
        stop_reason = "max_steps"
        meter = Throughput(config.batch_size * config.window * config.grad_accum * dist_info.world_size)
        out_of_time = _deadline(config.max_minutes, meter.started)
        pbar = _progress_bar(config.max_steps, st.step, enabled=progress and is_main)
        stopper = _GracefulStop(enabled=not dist_info.enabled)
        run.model.train()
        with stopper, out_of_memory_as(oom), contextlib.closing(pbar), contextlib.closing(metrics), \
                contextlib.closing(run):  # fmt: skip
            while st.step < config.max_steps:
                t0 = time.perf_counter()
                lr = get_lr(st.step, config, st.schedule)
                s = run.train_step(lr, stop_vote=lambda: stopper.requested or (is_main and out_of_time()))
                tps = meter.add(time.perf_counter() - t0, s.tokens, s.loss)
                if on_step is not None:
                    on_step(st.step, s.loss, run.model)
                row: dict[str, Any] = {
                    "step": st.step,
                    "elapsed_s": round(st.elapsed_s, 3),
                    "lr": lr,
                    "train_loss": s.loss,
                    "grad_norm": s.grad_norm if config.grad_clip > 0 else None,
                    "tokens_per_s": round(tps, 1),
                    "skipped": st.skipped,
                }
                if st.bad_streak >= config.max_bad_steps:
                    metrics.write(row)
                    raise _diverged(st, run_dir)

                final = s.stop_votes > 0 or st.step >= config.max_steps
                if s.stop_votes > 0:
                    stop_reason = "interrupted" if stopper.requested else "max_minutes"
                validating = st.step % config.eval_every == 0 or final
                best = False
                if validating and (result := run.validate()) is not None:
                    row["val_loss"], row["val_nats_per_note"] = result.loss, result.nats_per_note
                    row.update(run.music_stats())
                    best = st.record(result)
                    if config.patience and st.evals_since_best >= config.patience and not final:
                        stop_reason, final = "early_stop", True
                    say(
                        f"step {st.step}: train {s.loss:.4f}  val {result.loss:.4f} nats/token, "
                        f"{result.nats_per_note:.3f} nats/note" + ("  (best)" if best else "")
                    )
                metrics.write(row)
                if validating and st.bad_streak == 0:  # never overwrite a good checkpoint when diverging
                    st.save(run_dir, (BEST, LAST) if best else (LAST,), run.model, run.meta)
                if validating and is_main and plot:
                    plot_metrics(run_dir / METRICS_FILE, run_dir / PLOT_FILE, title=run_dir.name)
                pbar.set_postfix(loss=f"{s.loss:.3f}", tok_s=f"{meter.ema_tps:,.0f}", refresh=False)
                pbar.update(1)
                if final:
                    break

        if stop_reason == "interrupted":
            say(f"interrupted at step {st.step}; continue with --resume")
        elif is_main and config.fit_cache and (run_dir / BEST).exists():
            fit_best_cache(run_dir / BEST, corpus, say)
        return _result(st, run_dir, is_main, stop_reason, meter)


def fit_best_cache(best: Path, corpus: Corpus, say: Callable[[str], None]) -> None:
    """Fit the neural cache of ``best`` on the validation split: its weights for likelihood, then for
    sampling (``composer.formfit``: songs that repeat bars as the held-out pieces do)."""
    from composer.formfit import fit_checkpoint_sampling

    val = [corpus.piece_tokens(p) for p in corpus.pieces("val")]
    fit = fit_checkpoint_cache(best, val, say)
    if fit is not None and fit.config.enabled:
        fit_checkpoint_sampling(best, [corpus.tokenizer.decode(ids) for ids in val], say)


# ------------------------------------------------------------------------------------------- the run


class _Run:
    """What one training invocation holds: device, data, model, optimizer, and the ``RunState``.

    ``train`` above is the loop; this class gives it its steps (``train_step``, ``validate``).
    """

    def __init__(
        self,
        corpus: Corpus,
        run_dir: Path,
        config: TrainConfig,
        raw: RawCheckpoint | None,
        dist_info: DistInfo,
        run_args: dict[str, Any] | None,
        say: Callable[[str], None],
    ) -> None:
        self.corpus, self.config, self.dist = corpus, config, dist_info
        self.tok = _model_tokenizer(corpus, config, raw, say)
        set_threads(config.num_threads)
        self.device = resolve_device(config.device, dist_info.local_rank if dist_info.enabled else None)
        self.dtype = amp_dtype(self.device, config.amp)
        scaler = make_grad_scaler(self.device, self.dtype)
        stream = self._load_data()
        self._build_model(raw)
        carry, schedule = self.model.init_state(config.batch_size, self.device), initial_schedule(config)
        self.state = RunState(self.optimizer, scaler, stream, carry, schedule, self.device, dist_info)
        if raw is not None:
            self.state.restore(raw, config, corpus, say)
            say(f"resuming {run_dir} at step {self.state.step}")
        self.meta = run_meta(config, self.model.config, corpus, run_args, self.tok)
        self.music_reference: FeatureSet | None = None  # the validation pieces' music, made on first use

    def _load_data(self) -> PieceStream:
        """This process's share of the pieces, on the device; the stream of training windows."""
        corpus, config, dist_info, tok = self.corpus, self.config, self.dist, self.tok
        self.train_pieces = [
            p for p in corpus.pieces("train")[dist_info.rank :: dist_info.world_size] if p.length >= 2
        ]
        self.val_pieces = corpus.pieces("val")[dist_info.rank :: dist_info.world_size]
        if not self.train_pieces:
            where = f" for process {dist_info.rank} of {dist_info.world_size}" if dist_info.enabled else ""
            raise CorpusError(f"{corpus.path}: no training pieces{where}")
        drums = config.transpose > 0  # transposition leaves drum notes alone
        cs = tok.conditions  # each piece's condition tokens go after its BOS (composer.conditions)
        train_pre = None if cs is None else [cs.piece_prefix(tok.vocab, p) for p in self.train_pieces]
        val_pre = None if cs is None else [cs.piece_prefix(tok.vocab, p) for p in self.val_pieces]
        n_train = sum(p.length for p in self.train_pieces)
        n_val = sum(p.length for p in self.val_pieces)
        train_store = TokenStore(
            corpus.tokens,
            self.train_pieces,
            self.device,
            tok,
            drums=drums,
            prefixes=train_pre,
            stream=streams(self.device, n_train, drums),
        )
        stream_val = streams(self.device, n_val)
        self.val_store = TokenStore(
            corpus.tokens,
            self.val_pieces,
            self.device,
            keep_host=not stream_val,
            prefixes=val_pre,
            vocab_size=tok.vocab.size,
            stream=stream_val,
        )
        augmenter = Augmenter(tok, config.augment, train_store, self.device, config.condition_dropout)
        data_rng = np.random.default_rng([config.seed, dist_info.rank])
        self.batcher = Batcher(train_store, config.window, int(tok.pad_id), augmenter)
        return PieceStream(
            train_store.lengths,
            config.batch_size,
            config.window,
            rng=data_rng,
            loop=True,
            sample_aug=lambda piece: augmenter.sample(data_rng, piece),
        )

    def _build_model(self, raw: RawCheckpoint | None) -> None:
        """The model (the checkpoint's weights on resume), its optimizer and, under torchrun, DDP."""
        config, device = self.config, self.device
        torch.manual_seed(config.seed)  # seed before the model is built, seed + rank after
        wanted = config.model_config(self.tok.vocab.size, self.tok.condition_slots)
        if raw is not None:
            self.model, saved = model_from_raw(raw, device)
            if not saved.condition_slots:  # a run from before conditions reached every step goes on without
                wanted = ModelConfig.from_dict({**wanted.to_dict(), "condition_slots": ()})
            if saved != wanted:
                raise ConfigError(
                    f"the architecture cannot change on --resume: {raw.path} has {saved.to_dict()}, "
                    f"the config asks for {wanted.to_dict()}"
                )
        else:
            self.model = LSTMModel(wanted).to(device)
            if config.chrono_tokens:
                self.model.chrono_init(config.chrono_tokens)
        if self.dist.rank:
            torch.manual_seed(config.seed + self.dist.rank)  # different dropout masks per process
        self.optimizer = make_optimizer(self.model, config, device)
        self.ddp: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        self.params = [p for p in self.model.parameters() if p.requires_grad]

    def close(self) -> None:
        """Drop the DistributedDataParallel wrapper once the loop is over: it holds the process group,
        which must be gone before the group is destroyed (else gloo now and then aborts the process at
        exit: "terminate called without an active exception")."""
        if self.ddp is not self.model:
            self.ddp = self.model
            gc.collect()

    def describe(self) -> str:
        c, m = self.config, self.model.config
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
        config, device, st = self.config, self.device, self.state
        scaler = st.scaler
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        plans = [st.stream.next() for _ in range(config.grad_accum)]
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
            inputs, targets, keep = self.batcher.gather(plan)  # (B, T), (B, T), (B,)
            carry = reset_rows(st.carry, keep)  # rows starting a piece forget the previous one
            no_sync = self.dist.enabled and i < len(plans) - 1  # DDP: all-reduce on the last window only
            with self.ddp.no_sync() if no_sync else contextlib.nullcontext():  # type: ignore[operator]
                with autocast(device, self.dtype):
                    nll, carry = window_nll(
                        self.ddp, inputs, targets, carry, ignore_index=int(self.tok.pad_id), reduction="sum"
                    )
                loss = nll / denom
                if config.cell_penalty > 0:  # keeps the carried cells bounded (see TrainConfig)
                    loss = loss + config.cell_penalty / len(plans) * cell_excess(carry[1], config.cell_limit)
                (scaler.scale(loss) if scaler is not None else loss).backward()
            st.carry = detach_state(carry)  # carried into the next window, without its graph
            nll_sum += nll.detach()

        if scaler is not None:
            scaler.unscale_(self.optimizer)  # before clipping, which must see the true gradients
        if config.grad_clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.params, config.grad_clip)
        else:
            grad_norm = torch.zeros((), device=device)
        counts = torch.tensor([float(n_targets), float(stop_vote())], device=device)
        stats = torch.cat([nll_sum.float().reshape(1), counts])  # (3,): nll, targets, stop votes
        total_nll, total_targets, stop_votes = all_reduce_sum(stats, self.dist).tolist()  # the one host sync
        gnorm = float(grad_norm)
        train_loss = total_nll / max(total_targets, 1.0)
        finite = math.isfinite(train_loss) and (scaler is not None or math.isfinite(gnorm))
        self._update(finite)
        return StepStats(train_loss, gnorm, int(total_targets), stop_votes, not finite)

    def _update(self, finite: bool) -> None:
        """Apply the step's gradients (unless the loss was not finite), clear them, count the step."""
        st, scaler = self.state, self.state.scaler
        if finite:
            if scaler is not None:
                scaler.step(self.optimizer)  # skips by itself if fp16 gradients overflowed
                scaler.update()
            else:
                self.optimizer.step()
            st.bad_streak = 0
        else:
            if scaler is not None:
                scaler.update()  # closes this step's unscale_ bookkeeping
            st.bad_streak += 1
            st.skipped += 1
            st.carry = self.model.init_state(self.config.batch_size, self.device)  # a NaN must not linger
        self.optimizer.zero_grad(set_to_none=True)
        st.step += 1

    def validate(self) -> Validation | None:
        c = self.config
        return validate(self.model, self.val_store, self.tok, batch_size=c.batch_size, window=c.window,
                        max_batches=c.eval_batches, dtype=self.dtype, dist_info=self.dist)  # fmt: skip

    def music_stats(self) -> dict[str, float]:
        """Yang & Lerch statistics of a few sampled songs against the validation pieces (process 0, if asked).

        Sampling uses its own seeded CPU generator and leaves the model's mode as it was, so it neither
        consumes the global torch RNG nor changes the run's course."""
        if not self.config.music_samples or not self.dist.is_main:
            return {}
        tok = self.tok
        if self.music_reference is None:
            val = self.corpus.pieces("val")[:MUSIC_REFERENCE_PIECES]
            scores = [tok.decode(self.corpus.piece_tokens(p)) for p in val]
            self.music_reference = FeatureSet.from_scores(scores)
        gen = torch.Generator(device="cpu").manual_seed(int(self.config.seed))
        n, length = self.config.music_samples, Length(seconds=MUSIC_SECONDS)
        out = sample_ids(self.model, tok, n, length, generator=gen, device=self.device)
        cut = (np.asarray(out.hit_cap) | np.asarray(out.forced)).tolist()
        songs = FeatureSet.from_scores([tok.decode(ids) for ids in out.ids], cut)
        stats = music_stats_summary(self.music_reference, songs)
        keys = ("mean_oa", "mean_kl", "repeated_bars", "degenerate_rate")
        return {f"music_{k}": stats[k] for k in keys if k in stats}


# ------------------------------------------------------------------------------------------- helpers


def _model_tokenizer(
    corpus: Corpus, config: TrainConfig, raw: RawCheckpoint | None, say: Callable[[str], None]
) -> Tokenizer:
    """The tokenizer the model reads: the corpus's, with the run's conditions appended (a resumed run's
    are the checkpoint's; a new run's are what ``config.conditions`` asks of the corpus)."""
    from composer.conditions import from_corpus
    from composer.tokenizer import tokenizer_from_config

    if raw is not None:
        conditions = conditions_from_meta(raw.meta)
    else:
        conditions = from_corpus(corpus, config.conditions, say, transpose=config.transpose)
    if conditions is None:
        return corpus.tokenizer
    if raw is None:
        say("conditions: " + "; ".join(f"{n} ({v})" for n, v in conditions.describe()))
    return tokenizer_from_config(corpus.tokenizer.config, conditions)


def _messenger(is_main: bool, progress: bool, log: Callable[[str], None] | None) -> Callable[[str], None]:
    """Where the run's messages go: ``log`` if given, else stderr above the progress bar; process 0 only."""
    from tqdm.auto import tqdm

    def say(msg: str) -> None:
        if is_main and log is not None:
            log(msg)
        elif is_main and progress:
            tqdm.write(msg, file=sys.stderr)

    return say


def _progress_bar(max_steps: int, step: int, enabled: bool) -> tqdm[NoReturn]:
    from tqdm.auto import tqdm

    return tqdm(
        total=max_steps,
        initial=min(step, max_steps),
        disable=not enabled,
        unit="step",
        dynamic_ncols=True,
        file=sys.stderr,
    )


def _deadline(max_minutes: float | None, t_start: float) -> Callable[[], bool]:
    """Whether this invocation's time budget, from ``t_start`` (``time.perf_counter``), is spent."""
    return lambda: max_minutes is not None and time.perf_counter() - t_start >= max_minutes * 60


def _result(st: RunState, run_dir: Path, is_main: bool, stop_reason: str, meter: Throughput) -> TrainResult:
    t = meter.train_time
    return TrainResult(
        steps=st.step,
        best_val_loss=st.best_val,
        best_step=st.best_step,
        val_loss=None if st.last_eval is None else st.last_eval.loss,
        val_nats_per_note=None if st.last_eval is None else st.last_eval.nats_per_note,
        last_path=find_last(run_dir) if is_main else None,
        best_path=run_dir / BEST if is_main and (run_dir / BEST).is_dir() else None,
        run_dir=run_dir,
        stop_reason=stop_reason,
        tokens_per_s=meter.tokens / t if t > 0 else 0.0,
        positions_per_s=meter.positions / t if t > 0 else 0.0,
        elapsed_s=time.perf_counter() - meter.started,
        skipped_steps=st.skipped,
        train_losses=meter.losses,
    )


def _diverged(st: RunState, run_dir: Path) -> ComposerError:
    kept = find_last(run_dir)
    return ComposerError(
        f"training diverged: {st.bad_streak} steps in a row had a non-finite loss (step {st.step}); "
        + (f"the last good checkpoint is {kept}; " if kept else "")
        + "try a lower --lr"
    )


class _GracefulStop:
    """First Ctrl-C: finish the current step, save, return. Second: stop at once."""

    def __init__(self, enabled: bool) -> None:
        self.requested = False
        self._old: Callable[[int, FrameType | None], Any] | int | None = None
        self._enabled = enabled and threading.current_thread() is threading.main_thread()

    def __enter__(self) -> _GracefulStop:
        if self._enabled:
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum: int, frame: FrameType | None) -> None:
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
