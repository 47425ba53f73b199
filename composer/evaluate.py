"""Evaluate a checkpoint: likelihood against baselines, use of long-range context, and the music it writes.

``evaluate_checkpoint`` assembles the report that ``composer evaluate`` prints (and writes as JSON):

* **likelihood** -- every piece is streamed through the model from its start with the LSTM state carried
  across chunks (under ``torch.inference_mode``); tokens 1..n-1 are predicted from their prefix (BOS is
  context, not a target). Reported in nats per token, in nats per **note** (the total NLL over the notes
  measured on: the figure that compares models with different tokenizations), as perplexity, with the
  token and note counts.
* **baselines** -- a unigram and an interpolated Kneser-Ney n-gram (``composer.baselines``) fit on the
  training corpus's train split and scored on the same tokens, so every figure has context.
* **long-range structure** -- for targets far into each piece (position >= max(distances) and >= the
  training window) the NLL with the full history against the NLL when the model sees only the d tokens
  before the target from a fresh zero state. ``gain = reset - full`` (nats/token) > 0 means the model
  uses context older than d tokens. A reset whose window reaches the start of the piece *is* the full
  history, by definition, so its gain is exactly zero.
* **music** -- samples (generated with ``composer.sample`` or read from a folder) against the reference
  pieces on Yang & Lerch statistics (``composer.musicstats``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from composer.errors import ComposerError, CorpusError, MidiReadError
from composer.midi import Score

if TYPE_CHECKING:  # pragma: no cover
    from composer.checkpoint import Checkpoint
    from composer.corpus import Corpus
    from composer.musicstats import FeatureSet, MusicComparison
    from composer.tokenizer import Tokenizer

DEFAULT_DISTANCES = (64, 256, 1024)
#: Tokens per chunk when streaming a piece (the state carries across chunks).
CHUNK = 512
#: Pieces streamed side by side.
BATCH_PIECES = 16
#: Long-range targets per piece, and in all (the same targets for every distance). Each bucket costs
#: targets x distance LSTM steps: 1024 x 1024 is about half a minute on one CPU thread (small preset).
TARGETS_PER_PIECE = 256
MAX_TARGETS = 1024
#: Window tokens per forward pass when scoring resets (rows x distance).
RESET_BATCH_TOKENS = 16384
#: Reference pieces used for the music statistics (the first ones, deterministic).
MAX_REFERENCE = 512
#: Length of generated samples: the reference's median duration, within these bounds (seconds).
SAMPLE_SECONDS_MIN, SAMPLE_SECONDS_MAX = 8.0, 120.0
DEFAULT_NGRAM_ORDER = 5
#: The baselines are fit on at most this many training tokens (memory grows with tokens x order).
MAX_BASELINE_TOKENS = 20_000_000

Log = Callable[[str], None]


def _quiet(msg: str) -> None:
    pass


# ------------------------------------------------------------------------------------------------ data


@dataclass
class EvalData:
    """What to measure on: token sequences (BOS ... EOS) and, for the music statistics, the pieces."""

    kind: str  # "corpus" (its validation split) or "midi" (files encoded with the checkpoint's tokenizer)
    path: Path
    names: list[str]
    pieces: list[np.ndarray]
    failed: list[tuple[str, str]] = field(default_factory=list)
    corpus: Corpus | None = None
    scores: list[Score] | None = None  # MIDI input: the scores as read

    def reference_scores(self, tokenizer: Tokenizer, limit: int = MAX_REFERENCE) -> list[Score]:
        """The reference set: the MIDI files as read, or the corpus pieces decoded with the tokenizer."""
        if self.scores is not None:
            return self.scores[:limit]
        return [tokenizer.decode(ids) for ids in self.pieces[:limit]]

    def describe(self) -> str:
        if self.kind == "corpus":
            return f"{self.path}, validation split"
        return f"{self.path}, MIDI encoded with the checkpoint's tokenizer"


def _config_diff(a: Any, b: Any) -> str:
    da, db = a.to_dict(), b.to_dict()
    keys = [k for k in da if da.get(k) != db.get(k)]
    return ", ".join(f"{k} {da.get(k)!r} vs {db.get(k)!r}" for k in keys[:4])


def open_matching_corpus(path: str | os.PathLike[str], tokenizer: Tokenizer) -> Corpus:
    """Open a corpus, refusing one whose tokenizer differs from ``tokenizer`` (one line saying how)."""
    from composer.corpus import Corpus

    corpus = Corpus.open(path)
    if corpus.tokenizer.config != tokenizer.config:
        raise CorpusError(
            f"{path}: the corpus was built with another tokenizer than the checkpoint's "
            f"(corpus vs checkpoint: {_config_diff(corpus.tokenizer.config, tokenizer.config)}); "
            "pass a folder of MIDI files instead, or a corpus built with the same settings"
        )
    return corpus


def load_midi_data(path: Path, tokenizer: Tokenizer) -> EvalData:
    """Encode every MIDI file under ``path``; unreadable files are listed in ``failed``, not fatal."""
    from composer.corpus import find_midi_files
    from composer.midi import read_midi

    files = find_midi_files([path])
    if not files:
        raise ComposerError(f"{path}: no MIDI files (.mid, .midi, .kar, .smf, .rmi) to evaluate on")
    names: list[str] = []
    pieces: list[np.ndarray] = []
    scores: list[Score] = []
    failed: list[tuple[str, str]] = []
    for f in files:
        try:
            score = read_midi(f)
            if score.note_count == 0:
                raise MidiReadError("no notes")
            ids, stats = tokenizer.encode(score)
            if stats.notes_encoded == 0:
                raise MidiReadError("no notes in the tokenizer's pitch range")
        except ComposerError as e:
            failed.append((str(f), str(e)))
            continue
        except Exception as e:  # one odd file must not cost the others
            failed.append((str(f), f"unexpected {type(e).__name__}: {e}"))
            continue
        names.append(str(f))
        pieces.append(np.asarray(ids, dtype=np.int64))
        scores.append(score)
    if not pieces:
        first = f" (first: {failed[0][0]}: {failed[0][1]})" if failed else ""
        raise ComposerError(f"{path}: none of the {len(files)} MIDI files could be used{first}")
    return EvalData("midi", path, names, pieces, failed, scores=scores)


def load_eval_data(ckpt: Checkpoint, data: str | os.PathLike[str] | None) -> EvalData:
    """The data to evaluate on: a MIDI folder (or file), a corpus's validation split, or -- with no
    ``data`` -- the validation split of the corpus recorded in the checkpoint, if it still exists."""
    from composer.corpus import MANIFEST

    tok = ckpt.tokenizer
    if data is None:
        recorded = ckpt.corpus_path
        if recorded and (Path(recorded) / MANIFEST).is_file():
            path = Path(recorded)
        else:
            where = f"the training corpus {recorded} is gone" if recorded else "it records no corpus"
            raise ComposerError(
                f"no data given and {where}: pass a folder of MIDI files or a corpus, "
                f"e.g. composer evaluate {ckpt.path} my_midi/"
            )
    else:
        path = Path(data)
    if not path.exists():
        raise ComposerError(f"{path}: no such file or folder")
    if path.is_dir() and (path / MANIFEST).is_file():
        corpus = open_matching_corpus(path, tok)
        val = corpus.pieces("val")
        if not val:
            raise CorpusError(f"{path}: the corpus has no validation pieces; pass a folder of MIDI files")
        pieces = [np.asarray(corpus.piece_tokens(p), dtype=np.int64) for p in val]
        return EvalData("corpus", path, [p.path for p in val], pieces, corpus=corpus)
    return load_midi_data(path, tok)


# ------------------------------------------------------------------------------------------ likelihood


@dataclass
class Likelihood:
    nats_per_token: float
    nats_per_note: float
    perplexity: float
    tokens: int
    notes: int

    @classmethod
    def from_totals(cls, nll: float, tokens: int, notes: int) -> Likelihood:
        npt = nll / tokens if tokens else float("nan")
        return cls(
            nats_per_token=npt,
            nats_per_note=nll / notes if notes else float("nan"),
            perplexity=math.exp(npt) if tokens and npt < 700 else float("nan"),
            tokens=tokens,
            notes=notes,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "nats_per_token": self.nats_per_token,
            "nats_per_note": self.nats_per_note,
            "perplexity": self.perplexity,
            "tokens": self.tokens,
            "notes": self.notes,
        }


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def token_nlls(
    model: torch.nn.Module,
    pieces: Sequence[np.ndarray],
    *,
    chunk: int = CHUNK,
    batch_pieces: int = BATCH_PIECES,
    pad_id: int = 0,
) -> list[np.ndarray]:
    """Per piece, the NLL (nats) of tokens 1..n-1 given everything before them in the piece.

    Pieces are streamed side by side (longest first, padded at the end) ``chunk`` tokens at a time with
    the LSTM state carried from each piece's start, so each token costs one step however deep it lies.
    """
    if chunk < 1:
        raise ComposerError(f"chunk must be at least 1, got {chunk}")
    device = _device_of(model)
    out: list[np.ndarray] = [np.zeros(0)] * len(pieces)
    order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i]))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b0 in range(0, len(order), batch_pieces):
                group = [i for i in order[b0 : b0 + batch_pieces] if len(pieces[i]) >= 2]
                if not group:
                    continue
                longest = max(len(pieces[i]) for i in group)
                arr = np.full((len(group), longest), pad_id, dtype=np.int64)
                for r, i in enumerate(group):
                    arr[r, : len(pieces[i])] = pieces[i]
                tokens = torch.from_numpy(arr).to(device)
                nll = np.zeros((len(group), longest - 1), dtype=np.float64)
                state = None
                for s in range(0, longest - 1, chunk):
                    e = min(s + chunk, longest - 1)
                    logits, state = model(tokens[:, s:e], state)
                    loss = F.cross_entropy(
                        logits.float().reshape(-1, logits.size(-1)),  # (B, T, V) -> (B*T, V)
                        tokens[:, s + 1 : e + 1].reshape(-1),  # (B, T) -> (B*T,)
                        reduction="none",
                    )
                    nll[:, s:e] = loss.view(len(group), e - s).cpu().double().numpy()
                for r, i in enumerate(group):
                    out[i] = nll[r, : len(pieces[i]) - 1]
    finally:
        if was_training:
            model.train()
    return out


def note_counts(tokenizer: Tokenizer, pieces: Sequence[np.ndarray]) -> list[int]:
    """Notes among each piece's targets (tokens 1..n-1)."""
    return [tokenizer.note_count(np.asarray(p)[1:]) for p in pieces]


def likelihood_of(nlls: Sequence[np.ndarray], notes: Sequence[int]) -> Likelihood:
    total = float(sum(float(np.sum(x)) for x in nlls))
    return Likelihood.from_totals(total, int(sum(len(x) for x in nlls)), int(sum(notes)))


# ----------------------------------------------------------------------------------------- long range


@dataclass
class LongRangeBucket:
    distance: int
    targets: int
    pieces: int
    nll_full: float  # nats/token with the whole history
    nll_reset: float  # nats/token seeing only the `distance` tokens before each target (fresh state)

    @property
    def gain(self) -> float:
        return self.nll_reset - self.nll_full if self.targets else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "distance": self.distance,
            "gain": self.gain,
            "targets": self.targets,
            "pieces": self.pieces,
            "nll_full": self.nll_full,
            "nll_reset": self.nll_reset,
        }


@dataclass
class LongRange:
    min_position: int
    targets_per_piece: int
    eligible_pieces: int
    buckets: list[LongRangeBucket]

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_position": self.min_position,
            "targets_per_piece": self.targets_per_piece,
            "eligible_pieces": self.eligible_pieces,
            "buckets": [b.to_dict() for b in self.buckets],
        }


def window_nll(model: torch.nn.Module, windows: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """NLL of ``targets[r]`` right after ``windows[r]`` (R, L) fed from a fresh zero state."""
    device = _device_of(model)
    with torch.inference_mode():
        x = torch.as_tensor(windows, dtype=torch.long, device=device)
        logits, _ = model(x, None)
        lp = torch.log_softmax(logits[:, -1].float(), dim=-1)  # only the last position predicts the target
        t = torch.as_tensor(targets, dtype=torch.long, device=device)
        return (-lp.gather(1, t[:, None])[:, 0]).cpu().double().numpy()


def reset_nlls(
    model: torch.nn.Module,
    ids: np.ndarray,
    positions: np.ndarray,
    distance: int,
    full: np.ndarray,
    batch_tokens: int = RESET_BATCH_TOKENS,
) -> np.ndarray:
    """NLL of ``ids[t]`` for each t in ``positions`` seeing only ``ids[t-distance:t]`` from a zero state.

    Where the window would reach the piece's start (t <= distance) nothing is cut: the value is the full
    history's, ``full[t-1]``, exactly. ``full`` is the piece's ``token_nlls``.
    """
    ids = np.asarray(ids, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    out = full[positions - 1].astype(np.float64).copy()
    cut = np.flatnonzero(positions > distance)
    rows = max(1, batch_tokens // max(distance, 1))
    was_training = model.training
    model.eval()
    try:
        for k in range(0, len(cut), rows):
            sel = cut[k : k + rows]
            t = positions[sel]
            windows = ids[t[:, None] - distance + np.arange(distance)[None, :]]
            out[sel] = window_nll(model, windows, ids[t])
    finally:
        if was_training:
            model.train()
    return out


def long_range_positions(length: int, min_position: int, k: int) -> np.ndarray:
    """Up to ``k`` target positions spread evenly over [min_position, length-1] (deterministic)."""
    lo, hi = max(min_position, 1), length - 1
    if hi < lo or k < 1:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.rint(np.linspace(lo, hi, min(k, hi - lo + 1))).astype(np.int64))


def long_range(
    model: torch.nn.Module,
    pieces: Sequence[np.ndarray],
    full: Sequence[np.ndarray],
    distances: Sequence[int] = DEFAULT_DISTANCES,
    *,
    min_position: int | None = None,
    targets_per_piece: int = TARGETS_PER_PIECE,
    max_targets: int = MAX_TARGETS,
    log: Log = _quiet,
) -> LongRange:
    """Full-history NLL against reset-at-distance NLL on the same targets, per distance.

    Targets: positions >= ``min_position`` (default ``max(distances)``), at most ``targets_per_piece``
    per piece and about ``max_targets`` in all, spread evenly; every bucket uses the same targets.
    ``full`` is ``token_nlls(model, pieces)``. Costs about targets x distance LSTM steps per bucket.
    """
    distances = sorted({int(d) for d in distances})
    if not distances or distances[0] < 1:
        raise ComposerError(f"distances must be positive token counts, got {list(distances)}")
    if min_position is None:
        min_position = max(distances)
    eligible = [i for i, p in enumerate(pieces) if len(p) - 1 >= max(min_position, 1)]
    per_piece = targets_per_piece
    if eligible:
        per_piece = max(1, min(targets_per_piece, math.ceil(max_targets / len(eligible))))
    chosen = {i: long_range_positions(len(pieces[i]), min_position, per_piece) for i in eligible}
    buckets = []
    for d in distances:
        full_sum = reset_sum = 0.0
        n = 0
        for i, pos in chosen.items():
            if not len(pos):
                continue
            r = reset_nlls(model, pieces[i], pos, d, full[i])
            full_sum += float(full[i][pos - 1].sum())
            reset_sum += float(r.sum())
            n += len(pos)
        log(f"long range: distance {d}, {n} targets")
        buckets.append(
            LongRangeBucket(
                distance=d,
                targets=n,
                pieces=len(eligible),
                nll_full=full_sum / n if n else float("nan"),
                nll_reset=reset_sum / n if n else float("nan"),
            )
        )
    return LongRange(min_position, per_piece, len(eligible), buckets)


# ------------------------------------------------------------------------------------------ baselines


def training_corpus(ckpt: Checkpoint, data: EvalData) -> tuple[Corpus | None, str]:
    """The corpus to fit the baselines on (the checkpoint's, else the data's) and a remark."""
    from composer.corpus import MANIFEST

    recorded = ckpt.corpus_path
    if recorded and (Path(recorded) / MANIFEST).is_file():
        try:
            corpus = open_matching_corpus(recorded, ckpt.tokenizer)
        except ComposerError as e:
            if data.corpus is None:
                return None, f"training corpus unusable ({e})"
        else:
            note = ""
            if ckpt.corpus_fingerprint and corpus.fingerprint != ckpt.corpus_fingerprint:
                note = " (changed since training)"
            return corpus, note
    if data.corpus is not None:
        return data.corpus, " (the data's corpus: the checkpoint's training corpus is not available)"
    return None, f"training corpus {recorded or '(none recorded)'} is not available"


def baseline_likelihoods(
    train_corpus: Corpus, pieces: Sequence[np.ndarray], notes: Sequence[int], order: int
) -> dict[str, Any]:
    """Unigram and n-gram NLL of ``pieces`` (fit on ``train_corpus``'s train split, its first
    ``MAX_BASELINE_TOKENS`` tokens at most)."""
    from composer.baselines import NGramModel, UnigramModel

    train: list[np.ndarray] = []
    used = 0
    for p in train_corpus.pieces("train"):
        if used >= MAX_BASELINE_TOKENS:
            break
        train.append(np.asarray(train_corpus.piece_tokens(p), dtype=np.int64))
        used += p.length
    if not train:
        raise CorpusError(f"{train_corpus.path}: no training pieces to fit the baselines on")
    vocab = train_corpus.tokenizer.vocab.size
    out: dict[str, Any] = {
        "train_corpus": str(train_corpus.path),
        "train_tokens": int(sum(len(s) - 1 for s in train)),
    }
    uni = UnigramModel(vocab).fit(train)
    out["unigram"] = likelihood_of([uni.token_nll(p) for p in pieces], notes).to_dict()
    ngram = NGramModel(vocab, order).fit(train)
    all_nll = ngram.token_nll_many(pieces)
    split = np.cumsum([max(len(p) - 1, 0) for p in pieces])[:-1]
    out["ngram"] = {"order": order, "smoothing": "interpolated Kneser-Ney"}
    out["ngram"].update(likelihood_of(np.split(all_nll, split), notes).to_dict())
    return out


# ---------------------------------------------------------------------------------------------- music


@dataclass
class SampleSet:
    scores: list[Score]
    cut: list[bool]
    source: str
    failed: list[tuple[str, str]] = field(default_factory=list)


_CUT_MARKERS = ("token cap", "by force")


def _is_cut(warnings: Sequence[str]) -> bool:
    return any(m in w for w in warnings for m in _CUT_MARKERS)


def read_samples(folder: str | os.PathLike[str]) -> SampleSet:
    """Generated songs from a folder (``composer generate`` output: ``song_NNN.mid`` + ``.json``)."""
    from composer.corpus import find_midi_files
    from composer.midi import read_midi

    path = Path(folder)
    if not path.is_dir():
        raise ComposerError(f"{path}: no such samples folder")
    files = find_midi_files([path])
    if not files:
        raise ComposerError(f"{path}: no MIDI files in the samples folder")
    scores, cut, failed = [], [], []
    for f in files:
        try:
            scores.append(read_midi(f))
        except ComposerError as e:
            failed.append((str(f), str(e)))
            continue
        warns: list[str] = []
        sidecar = f.with_suffix(".json")
        if sidecar.is_file():
            try:
                w = json.loads(sidecar.read_text()).get("warnings", [])
                warns = [str(x) for x in w] if isinstance(w, list) else []
            except (OSError, ValueError, AttributeError):
                warns = []
        cut.append(_is_cut(warns))
    if not scores:
        raise ComposerError(f"{path}: none of the {len(files)} sample files could be read")
    return SampleSet(scores, cut, str(path), failed)


def sample_seconds(reference: Sequence[Score]) -> float:
    durations = [s.duration_seconds for s in reference if s.note_count]
    med = float(np.median(durations)) if durations else 30.0
    return float(min(max(med, SAMPLE_SECONDS_MIN), SAMPLE_SECONDS_MAX))


def generate_samples(
    ckpt: Checkpoint, n: int, seconds: float, seed: int, temperature: float, device: str
) -> SampleSet:
    from composer.sample import Length, generate

    songs = generate(ckpt, n, Length(seconds=seconds), temperature=temperature, seed=seed, device=device)
    return SampleSet(
        [s.score for s in songs],
        [_is_cut(s.warnings) for s in songs],
        f"generated: {n} x {seconds:.0f} s, temperature {temperature:g}, seed {seed}",
    )


# ------------------------------------------------------------------------------------ during training


def reference_features(corpus: Corpus, split: str = "val", limit: int = 64) -> FeatureSet:
    """Music features of the first ``limit`` pieces of a corpus split, decoded with its tokenizer.

    Compute it once per training run and pass it to ``sampled_music_stats`` at every validation.
    """
    from composer.musicstats import FeatureSet

    tok = corpus.tokenizer
    return FeatureSet.from_scores([tok.decode(corpus.piece_tokens(p)) for p in corpus.pieces(split)[:limit]])


def sampled_music_stats(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    reference: FeatureSet,
    *,
    n: int = 8,
    seconds: float = 20.0,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Sample ``n`` short songs from ``model`` and compare them with ``reference`` (``music_stats_summary``).

    Sampling uses its own seeded CPU generator and the model in eval mode (restored afterwards), so it
    neither consumes the global torch RNG nor changes a training run's course. About a second on a CPU
    for the small preset with the defaults.
    """
    from composer.musicstats import FeatureSet, music_stats_summary
    from composer.sample import Length, sample_ids

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    out = sample_ids(
        model,
        tokenizer,
        n,
        Length(seconds=seconds),
        generator=gen,
        device=device if device is not None else _device_of(model),
    )
    scores = [tokenizer.decode(ids) for ids in out.ids]
    cut = (np.asarray(out.hit_cap) | np.asarray(out.forced)).tolist()
    return music_stats_summary(reference, FeatureSet.from_scores(scores, cut))


# --------------------------------------------------------------------------------------------- report


@dataclass
class Evaluation:
    report: dict[str, Any]
    music: MusicComparison | None = None


def evaluate_checkpoint(
    checkpoint: str | os.PathLike[str] | Checkpoint,
    data: str | os.PathLike[str] | None = None,
    *,
    samples: int = 16,
    samples_dir: str | os.PathLike[str] | None = None,
    distances: Sequence[int] = DEFAULT_DISTANCES,
    ngram_order: int = DEFAULT_NGRAM_ORDER,
    max_targets: int = MAX_TARGETS,
    seed: int = 0,
    temperature: float = 1.0,
    device: str = "cpu",
    baselines: bool = True,
    log: Log = _quiet,
) -> Evaluation:
    """Everything ``composer evaluate`` reports, as a JSON-able dict (plus the music comparison to plot).

    ``samples`` songs are generated unless ``samples_dir`` gives already generated ones; ``samples=0``
    and no ``samples_dir`` skips the music section, empty ``distances`` the long-range one. Long-range
    targets lie at positions >= max(max(distances), the training window), ``max_targets`` at most.
    """
    from composer.checkpoint import Checkpoint, load_checkpoint
    from composer.device import resolve_device, set_threads

    dev = resolve_device(device)
    set_threads(0)  # a deliberate CPU thread count (see composer.device.auto_threads)
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, device=dev)
    ckpt.model.to(dev)
    tok = ckpt.tokenizer
    data_set = load_eval_data(ckpt, data)
    given_samples = read_samples(samples_dir) if samples_dir is not None else None  # fail early
    window = int(ckpt.train_config.get("window") or 0)
    report: dict[str, Any] = {
        "checkpoint": str(ckpt.path),
        "step": ckpt.step,
        "encoding": tok.encoding,
        "parameters": sum(p.numel() for p in ckpt.model.parameters()),
        "train_window": window or None,
        "data": {
            "kind": data_set.kind,
            "path": str(data_set.path),
            "split": "val" if data_set.kind == "corpus" else None,
            "pieces": len(data_set.pieces),
            "failed": [{"path": p, "reason": r} for p, r in data_set.failed],
        },
    }

    # likelihood
    log(f"scoring {len(data_set.pieces)} pieces")
    nlls = token_nlls(ckpt.model, data_set.pieces, pad_id=int(tok.pad_id))
    notes = note_counts(tok, data_set.pieces)
    report.update(likelihood_of(nlls, notes).to_dict())

    # baselines
    if baselines:
        corpus, remark = training_corpus(ckpt, data_set)
        if corpus is None:
            report["baselines"] = {"skipped": remark}
        else:
            log(f"fitting the unigram and {ngram_order}-gram baselines on {corpus.path}")
            report["baselines"] = baseline_likelihoods(corpus, data_set.pieces, notes, ngram_order)
            if remark:
                report["baselines"]["note"] = remark.strip(" ()")

    # long range
    min_pos = max(max(int(d) for d in distances), window) if distances else 0
    if distances:
        lr = long_range(
            ckpt.model,
            data_set.pieces,
            nlls,
            distances,
            min_position=min_pos,
            max_targets=max_targets,
            log=log,
        )
        report["long_range"] = lr.to_dict()

    # music
    comparison = None
    if given_samples is not None or samples > 0:
        from composer.musicstats import FeatureSet, compare_sets

        reference = data_set.reference_scores(tok)
        if given_samples is not None:
            sset = given_samples
        else:
            seconds = sample_seconds(reference)
            log(f"generating {samples} samples of {seconds:.0f} s")
            sset = generate_samples(ckpt, samples, seconds, seed, temperature, str(dev))
        comparison = compare_sets(
            FeatureSet.from_scores(reference), FeatureSet.from_scores(sset.scores, sset.cut)
        )
        report["music"] = {
            "samples_source": sset.source,
            "samples_failed": [{"path": p, "reason": r} for p, r in sset.failed],
            **comparison.to_dict(),
        }
    return Evaluation(report, comparison)


def _clean(obj: Any) -> Any:
    """NaN and infinities become null so that the JSON is valid."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj


def report_json(report: dict[str, Any]) -> str:
    return json.dumps(_clean(report), indent=2) + "\n"


def _f(x: Any, spec: str = ".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def format_report(r: dict[str, Any]) -> str:
    """The table ``composer evaluate`` prints."""
    lines: list[str] = []
    d = r["data"]
    lines.append(f"checkpoint  {r['checkpoint']} (step {r['step']}, {r['encoding']} encoding, "
                 f"{r['parameters']:,} parameters)")  # fmt: skip
    where = f"{d['path']}, validation split" if d["kind"] == "corpus" else f"{d['path']} (MIDI)"
    lines.append(f"data        {where}: {d['pieces']} pieces, {r['tokens']:,} tokens, {r['notes']:,} notes")
    for f in d["failed"][:10]:
        lines.append(f"  skipped {f['path']}: {f['reason']}")
    if len(d["failed"]) > 10:
        lines.append(f"  ... and {len(d['failed']) - 10} more skipped")

    lines.append("")
    lines.append(f"{'likelihood':<32}{'nats/token':>11}{'nats/note':>11}{'perplexity':>12}")
    rows = [("LSTM (this checkpoint)", r)]
    b = r.get("baselines") or {}
    if "ngram" in b:
        rows.append((f"{b['ngram']['order']}-gram (Kneser-Ney)", b["ngram"]))
        rows.append(("unigram", b["unigram"]))
    for name, x in rows:
        lines.append(
            f"  {name:<30}{_f(x['nats_per_token']):>11}{_f(x['nats_per_note'], '.3f'):>11}"
            f"{_f(x['perplexity'], '.2f'):>12}"
        )
    if "train_corpus" in b:
        note = f"; {b['note']}" if b.get("note") else ""
        lines.append(
            f"  baselines fit on {b['train_corpus']} train split ({b['train_tokens']:,} tokens){note}"
        )
    elif "skipped" in b:
        lines.append(f"  no baselines: {b['skipped']}")

    lr = r.get("long_range")
    if lr:
        lines.append("")
        n = lr["buckets"][0]["targets"] if lr["buckets"] else 0
        lines.append(
            f"long-range context: {n:,} targets at positions >= {lr['min_position']} "
            f"in {lr['eligible_pieces']} pieces"
        )
        if n:
            lines.append(f"  {'history cut to':<18}{'full NLL':>10}{'reset NLL':>11}{'gain':>10}")
            for bk in lr["buckets"]:
                lines.append(
                    f"  {str(bk['distance']) + ' tokens':<18}{_f(bk['nll_full']):>10}"
                    f"{_f(bk['nll_reset']):>11}{_f(bk['gain'], '+.4f'):>10}"
                )
            lines.append("  gain = reset - full, nats/token; > 0: the model uses context older than that")
        else:
            lines.append("  no piece is that long; try smaller --distances")

    m = r.get("music")
    if m:
        lines.append("")
        lines.append(
            f"music: {m['sample_pieces']} samples vs {m['reference_pieces']} reference pieces "
            "(Yang & Lerch 2018: OA 1 and KL 0 = same distribution)"
        )
        lines.append(f"  {'feature':<16}{'OA':>8}{'KL':>9}")
        for name, c in m["features"].items():
            lines.append(f"  {name:<16}{_f(c['oa'], '.3f'):>8}{_f(c['kl'], '.3f'):>9}")
        lines.append(f"  {'mean':<16}{_f(m['mean_oa'], '.3f'):>8}{_f(m['mean_kl'], '.3f'):>9}")
        ss, sr = m["self_similarity"]["samples"], m["self_similarity"]["reference"]
        lines.append(
            f"  self-similarity: repeated bars {_f(ss['repeated_bars'], '.1%')} "
            f"(reference {_f(sr['repeated_bars'], '.1%')}), chroma similarity "
            f"{_f(ss['chroma_similarity'], '.2f')} (reference {_f(sr['chroma_similarity'], '.2f')})"
        )
        ds, dr = m["degenerate"]["samples"], m["degenerate"]["reference"]
        lines.append(
            f"  degenerate samples: {ds['degenerate']} of {ds['pieces']} (silence > 8 s {ds['silence']}, "
            f"one pitch > 80% {ds['one_pitch']}, cut by the length limit {ds['cut']}, "
            f"no notes {ds['no_notes']}); reference {dr['degenerate']} of {dr['pieces']}"
        )
        lines.append(f"  samples: {m['samples_source']}")
        for f in m["samples_failed"][:5]:
            lines.append(f"  skipped sample {f['path']}: {f['reason']}")
    return "\n".join(lines)
