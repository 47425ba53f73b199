"""Evaluate a checkpoint: likelihood against baselines, use of long-range context, and the music it writes.

``evaluate_checkpoint`` assembles the report that ``composer evaluate`` prints (and writes as JSON):

* **likelihood** -- every piece is streamed through the model from its start with the LSTM state carried
  across chunks (``composer.nll.piece_nlls``); tokens 1..n-1 are predicted from their prefix (BOS is
  context, not a target). Reported in nats per token, in nats per **note** (the total NLL over the notes
  measured on: the figure that compares models with different tokenizations), as perplexity, with the
  token and note counts; with the checkpoint's fitted neural cache (``composer.cache``, fitted by
  ``fit_cache_on_data``) the same figures for the LSTM mixed with its cache, beside the plain ones.
* **baselines** -- a unigram and an interpolated Kneser-Ney n-gram (``composer.baselines``) fit on the
  training corpus's train split and scored on the same tokens, so every figure has context.
* **long-range structure** -- ``composer.longrange``, on targets at positions >= max(distances) and >= the
  training window: how much the model gains from context older than d tokens (with the cache too, when
  it is on), beside the share of those targets that copying from >= d tokens back predicts.
* **music** -- samples (generated with ``composer.sample`` or read from a folder) against the reference
  pieces on Yang & Lerch statistics (``composer.musicstats``), and their form (``composer.form``):
  bars repeated from >= 4 bars back, the repeat profile by bar lag, and loops.

``composer.eval_report`` formats the report as the printed table and as JSON.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from composer.cache import FIT_TOKENS, CacheConfig, CacheFit, cached_nlls, fit_on_pieces, piece_scores
from composer.errors import ComposerError, CorpusError, MidiReadError
from composer.longrange import DEFAULT_DISTANCES, MAX_TARGETS, long_range
from composer.midi import MIDI_SUFFIXES, Score
from composer.nll import piece_nlls

if TYPE_CHECKING:  # pragma: no cover
    from composer.checkpoint import Checkpoint
    from composer.corpus import Corpus
    from composer.musicstats import MusicComparison
    from composer.tokenizer import Tokenizer, TokenizerConfig

#: Reference pieces used for the music statistics (the first ones, deterministic).
MAX_REFERENCE = 512
#: Length of generated samples: the reference's median duration, within these bounds (seconds).
SAMPLE_SECONDS_MIN, SAMPLE_SECONDS_MAX = 8.0, 120.0
DEFAULT_NGRAM_ORDER = 5
#: Form: a bar counts as repeated when it equals a bar at least this many bars earlier ...
FORM_MIN_LAG = 4
#: ... and the report shows the repeat profile at these bar lags (the JSON has every lag).
FORM_LAGS = (1, 2, 4, 8, 16)
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


def _config_diff(a: TokenizerConfig, b: TokenizerConfig) -> str:
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
    from composer.corpus_file import find_midi_files
    from composer.midi import read_midi

    files = find_midi_files([path])
    if not files:
        raise ComposerError(f"{path}: no MIDI files ({', '.join(MIDI_SUFFIXES)}) to evaluate on")
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


def note_counts(tokenizer: Tokenizer, pieces: Sequence[np.ndarray]) -> list[int]:
    """Notes among each piece's targets (tokens 1..n-1)."""
    return [tokenizer.note_count(np.asarray(p)[1:]) for p in pieces]


def likelihood_of(nlls: Sequence[np.ndarray], notes: Sequence[int]) -> Likelihood:
    total = float(sum(float(np.sum(x)) for x in nlls))
    return Likelihood.from_totals(total, int(sum(len(x) for x in nlls)), int(sum(notes)))


def cached_piece_nlls(model: Any, pieces: Sequence[np.ndarray], config: CacheConfig) -> list[np.ndarray]:
    """Each piece's NLL of tokens 1..n-1 under the LSTM mixed with the cache over the piece's own past,
    streamed from the piece's start (``composer.cache.piece_scores`` + ``cached_nlls``)."""
    import torch

    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.inference_mode():
            for ids in pieces:
                ids = np.asarray(ids, dtype=np.int64)
                log_p, hidden = piece_scores(model, ids)
                out.append(cached_nlls(log_p, hidden, ids, config))
    finally:
        if was_training:
            model.train()
    return out


def resolve_cache(ckpt: Checkpoint, use: bool | None, name: str) -> CacheConfig | None:
    """The cache to evaluate with: the checkpoint's fitted one unless ``use`` is False; ``use`` True
    without one is an error naming the command that fits it (``name``: the checkpoint as the user gave
    it)."""
    if use is False or (use is None and ckpt.cache is None):
        return None
    if ckpt.cache is not None:
        return ckpt.cache
    if ckpt.meta.get("cache") is not None:  # fitted, with lambda 0: it did not help, so it is off
        raise ComposerError(
            f"{name}: its fitted cache is off (lambda 0: it did not lower the NLL on its fitting data); "
            f"refit it on other data with composer fit-cache {name} DATA, or leave out --cache"
        )
    raise ComposerError(f"{name}: no fitted cache; run composer fit-cache {name} first")


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


def read_samples(folder: str | os.PathLike[str]) -> SampleSet:
    """Generated songs from a folder (``composer generate`` output: ``song_NNN.mid`` + ``.json``)."""
    from composer.corpus_file import find_midi_files
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
        cut.append(_sidecar_cut(f.with_suffix(".json")))
    if not scores:
        raise ComposerError(f"{path}: none of the {len(files)} sample files could be read")
    return SampleSet(scores, cut, str(path), failed)


def _sidecar_cut(sidecar: Path) -> bool:
    """A generated song's ``"cut"`` (cut by the length limit) from its JSON sidecar; False without one."""
    if not sidecar.is_file():
        return False
    try:
        cut = json.loads(sidecar.read_text()).get("cut", False)
    except (OSError, ValueError, AttributeError):
        return False
    return cut is True


def sample_seconds(reference: Sequence[Score]) -> float:
    durations = [s.duration_seconds for s in reference if s.note_count]
    med = float(np.median(durations)) if durations else 30.0
    return float(min(max(med, SAMPLE_SECONDS_MIN), SAMPLE_SECONDS_MAX))


def generate_samples(
    ckpt: Checkpoint, n: int, seconds: float, seed: int, temperature: float, device: str
) -> SampleSet:
    from composer.sample import Length, generate

    songs = generate(
        ckpt, n=n, length=Length(seconds=seconds), temperature=temperature, seed=seed, device=device
    )
    return SampleSet(
        [s.score for s in songs],
        [s.cut for s in songs],
        f"generated: {n} x {seconds:.0f} s, temperature {temperature:g}, seed {seed}",
    )


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
    cache: bool | None = None,
    log: Log = _quiet,
) -> Evaluation:
    """Everything ``composer evaluate`` reports, as a JSON-able dict (plus the music comparison to plot).

    ``samples`` songs are generated unless ``samples_dir`` gives already generated ones; ``samples=0``
    and no ``samples_dir`` skips the music section, empty ``distances`` the long-range one. Long-range
    targets lie at positions >= max(max(distances), the training window), ``max_targets`` at most.
    ``cache``: None uses the checkpoint's fitted neural cache when it has one, True requires it, False
    leaves it out; the plain LSTM figures are the same either way.
    """
    from composer.checkpoint import Checkpoint, load_checkpoint
    from composer.device import resolve_device, set_threads

    dev = resolve_device(device)
    set_threads(0)  # a deliberate CPU thread count (see composer.device.auto_threads)
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint, device=dev)
    ckpt.model.to(dev)
    tok = ckpt.tokenizer
    name = str(ckpt.path if isinstance(checkpoint, Checkpoint) else checkpoint)
    cache_config = resolve_cache(ckpt, cache, name)
    data_set = load_eval_data(ckpt, data)
    given_samples = read_samples(samples_dir) if samples_dir is not None else None  # fail early
    window = int(ckpt.train_config.get("window") or 0)
    report = _report_header(ckpt, data_set, window)

    log(f"scoring {len(data_set.pieces)} pieces")
    # a conditioned model reads each piece asked for nothing (its conditions NONE); their tokens are
    # not scored, so the figures count the music's tokens only, as an unconditioned model's do
    inputs = [tok.condition(p) for p in data_set.pieces]
    k = tok.condition_count
    full = piece_nlls(ckpt.model, inputs, pad_id=int(tok.pad_id))
    nlls = [x[k:] for x in full]
    notes = note_counts(tok, data_set.pieces)
    report.update(likelihood_of(nlls, notes).to_dict())
    report["cache"] = None
    cached = None
    if cache_config is not None:
        log(f"scoring {len(data_set.pieces)} pieces with the cache")
        cached = cached_piece_nlls(ckpt.model, inputs, cache_config)
        stored = ckpt.meta.get("cache") or {}
        report["cache"] = {
            "config": cache_config.to_dict(),
            "fit": stored.get("fit"),
            **likelihood_of([x[k:] for x in cached], notes).to_dict(),
        }
    if baselines:
        report["baselines"] = _baselines_section(ckpt, data_set, notes, ngram_order, log)
    if distances:
        min_pos = max(max(int(d) for d in distances), window)
        lr = long_range(
            ckpt.model,
            inputs,
            full,
            distances,
            min_position=min_pos,
            max_targets=max_targets,
            cache=cache_config,
            full_cache=cached,
            log=log,
        )
        report["long_range"] = lr.to_dict()
    comparison = None
    if given_samples is not None or samples > 0:
        reference = data_set.reference_scores(tok)
        if given_samples is not None:
            sset = given_samples
        else:
            seconds = sample_seconds(reference)
            log(f"generating {samples} samples of {seconds:.0f} s")
            sset = generate_samples(ckpt, samples, seconds, seed, temperature, str(dev))
        comparison, report["music"] = _music_section(reference, sset)
        report["form"] = form_section(sset.scores, reference)
    return Evaluation(report, comparison)


def _report_header(ckpt: Checkpoint, data_set: EvalData, window: int) -> dict[str, Any]:
    return {
        "checkpoint": str(ckpt.path),
        "step": ckpt.step,
        "encoding": ckpt.tokenizer.encoding,
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


def _baselines_section(
    ckpt: Checkpoint, data_set: EvalData, notes: Sequence[int], order: int, log: Log
) -> dict[str, Any]:
    corpus, remark = training_corpus(ckpt, data_set)
    if corpus is None:
        return {"skipped": remark}
    log(f"fitting the unigram and {order}-gram baselines on {corpus.path}")
    out = baseline_likelihoods(corpus, data_set.pieces, notes, order)
    if remark:
        out["note"] = remark.strip(" ()")
    return out


def _music_section(reference: list[Score], sset: SampleSet) -> tuple[MusicComparison, dict[str, Any]]:
    from composer.musicstats import FeatureSet, compare_sets

    comparison = compare_sets(
        FeatureSet.from_scores(reference), FeatureSet.from_scores(sset.scores, sset.cut)
    )
    section = {
        "samples_source": sset.source,
        "samples_failed": [{"path": p, "reason": r} for p, r in sset.failed],
        **comparison.to_dict(),
    }
    return comparison, section


def form_section(samples: Sequence[Score], reference: Sequence[Score]) -> dict[str, Any]:
    """``composer.form.form_summary`` of the samples and of the reference pieces (profile: index L-1 is
    the share of bars equal to the bar L before)."""
    from composer.form import form_summary

    return {
        "min_lag": FORM_MIN_LAG,
        "lags": list(FORM_LAGS),
        "samples": form_summary(samples, min_lag=FORM_MIN_LAG).to_dict(),
        "reference": form_summary(reference, min_lag=FORM_MIN_LAG).to_dict(),
    }


# ----------------------------------------------------------------------------------------- cache fit


def _fit_sampling(path: Path, data_set: EvalData, device: str, log: Log) -> Any:
    """``composer.formfit.fit_sample_lambda`` for the checkpoint at ``path`` (its cache just fitted)."""
    from composer.checkpoint import load_checkpoint
    from composer.formfit import fit_sample_lambda

    ckpt = load_checkpoint(path, device=device)
    log("fitting the cache's sampling weight: songs' repeated bars against the data's")
    reference = [ckpt.tokenizer.decode(ids) for ids in data_set.pieces]
    return fit_sample_lambda(ckpt, reference, device=device)


@dataclass
class FittedCache:
    """One fit of the neural cache, stored in ``folders`` (checkpoints with the same weights)."""

    folders: list[Path]
    step: int
    fit: CacheFit
    data_kind: str  # as EvalData.kind
    data_path: Path
    written: list[Path]  # the checkpoint.json files rewritten
    sampling: Any = None  # composer.formfit.SampleLambdaFit, where the cache is on


def fit_cache_on_data(
    checkpoint: str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    *,
    max_tokens: int = FIT_TOKENS,
    device: str = "cpu",
    log: Log = _quiet,
) -> list[FittedCache]:
    """Fit the neural cache (``composer.cache.fit_on_pieces``) of a checkpoint, or of a run folder's
    ``best/`` and ``last/``, on held-out ``data`` (as for ``evaluate_checkpoint``: default the training
    corpus's validation split, ``max_tokens`` targets at most) and store it in each checkpoint. Checkpoints
    with the same weights share one fit; a fit with lambda 0 (no gain) is stored too, and is then off.
    """
    from composer.checkpoint import (
        BEST,
        LAST,
        META_FILE,
        MODEL_FILE,
        load_checkpoint,
        resolve_checkpoint,
        save_cache,
    )
    from composer.device import resolve_device, set_threads

    dev = resolve_device(device)
    set_threads(0)
    p = Path(checkpoint)
    folders = [p / n for n in (BEST, LAST) if (p / n / META_FILE).is_file()] or [resolve_checkpoint(p)]
    groups: dict[str, list[Checkpoint]] = {}
    for folder in folders:
        ckpt = load_checkpoint(folder, device=dev)
        digest = str((ckpt.meta.get("files", {}).get(MODEL_FILE) or {}).get("sha256", folder))
        groups.setdefault(digest, []).append(ckpt)
    data_set = load_eval_data(next(iter(groups.values()))[0], data)
    tokens = min(max_tokens, sum(max(len(x) - 1, 0) for x in data_set.pieces))
    where = f"{data_set.path} validation split" if data_set.kind == "corpus" else str(data_set.path)
    out = []
    for ckpts in groups.values():
        first = ckpts[0]
        names = " and ".join(c.path.name for c in ckpts)
        log(f"fitting the cache of {names} (step {first.step}) on {tokens:,} tokens of {where}")
        first.model.to(dev)
        fit = fit_on_pieces(first.model, [first.tokenizer.condition(p) for p in data_set.pieces], max_tokens)
        record = {
            **fit.to_dict(),
            "data": str(data_set.path),
            "split": "val" if data_set.kind == "corpus" else None,
        }
        written = [f for c in ckpts for f in save_cache(c.path, fit.config, record)]
        sampling = None
        if fit.config.enabled:
            sampling = _fit_sampling(first.path, data_set, str(dev), log)
            if sampling is not None:
                record["sampling"] = sampling.to_dict()
                config = replace(fit.config, sample_lam=sampling.sample_lam, sample_min_lag=sampling.min_lag)
                written = [f for c in ckpts for f in save_cache(c.path, config, record)]
        out.append(
            FittedCache(
                [c.path for c in ckpts], first.step, fit, data_set.kind, data_set.path, written, sampling
            )
        )
    return out
