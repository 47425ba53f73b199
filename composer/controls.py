"""Are the controls obeyed? Songs generated for each requested value, measured with the corpus's analysers.

``measure_controls`` (``composer evaluate --controls``, ``benchmarks/controls.py``) asks a conditioned
checkpoint for songs of each value of each condition and measures what came out:

- key: the songs' estimated key (``composer.attributes.estimate_key``, as the corpus's) against the key
  asked for; beside it, how often unconditioned songs happen to be in that key (the chance level);
- density and tempo levels: each level's songs' mean notes per quarter (median tempo), which must be
  ordered low < mid < high, and the share of songs whose value lies in the asked level's corpus range;
- instruments (any checkpoint): songs limited to a set of instruments play only those (by construction)
  and, "exact", all of them;
- labels: a classifier (multinomial logistic regression on music statistics) trained on the labelled
  training pieces recognises the asked label in the songs, beside how often it recognises the true label
  of held-out real pieces; and the conditional likelihood check: how often a held-out piece is more
  likely under its own label than under another.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from composer.attributes import LEVELS, estimate_key, level_of, median_tempo, note_density, parse_key
from composer.conditions import DRUMS_PROGRAM, Condition, instrument_names, piece_value
from composer.errors import ConfigError
from composer.sample import Asked, Length, SampleOutput, fit_songs, level_bounds, sample_ids

if TYPE_CHECKING:  # pragma: no cover
    from composer.checkpoint import Checkpoint
    from composer.corpus import Corpus
    from composer.midi import Score

Log = Callable[[str], None]

#: Keys asked for (the corpus's commonest, majors and minors alike).
MAX_KEYS = 6
#: Instrument sets asked for: each of the commonest programs alone, and the commonest pair.
MAX_PROGRAMS = 3


@dataclass(frozen=True)
class ControlOptions:
    songs: int = 8  # per requested value
    bars: int = 16  # length of each song (seconds where the encoding has no bars: 2 s per bar)
    seed: int = 0
    temperature: float = 1.0
    top_p: float | None = None


def _songs(
    ckpt: Checkpoint,
    opts: ControlOptions,
    conditions: dict[str, str] | None,
    programs: set[int] | None = None,
    salt: int = 0,
) -> list[Score]:
    tok = ckpt.tokenizer
    return [tok.decode(ids) for ids in _sample(ckpt, opts, conditions, programs, salt).ids]


def _sample(
    ckpt: Checkpoint,
    opts: ControlOptions,
    conditions: dict[str, str] | None,
    programs: set[int] | None = None,
    salt: int = 0,
    n: int | None = None,
) -> SampleOutput:
    tok = ckpt.tokenizer
    length = Length(bars=opts.bars) if tok.has_bars else Length(seconds=2.0 * opts.bars)
    gen = torch.Generator().manual_seed(opts.seed * 1_000_003 + salt)
    cache = ckpt.cache.sampling if ckpt.cache is not None else None
    return sample_ids(
        ckpt.model,
        tok,
        opts.songs if n is None else n,
        length,
        temperature=opts.temperature,
        top_p=opts.top_p,
        generator=gen,
        cache=cache,
        conditions=conditions,
        programs=programs,
        device=next(ckpt.model.parameters()).device,
    )


def _played(score: Score) -> set[int]:
    return {DRUMS_PROGRAM if i.is_drum else i.program for i in score.instruments if i.notes}


def bar_share(score: Score, programs: set[int]) -> float:
    """The mean, over ``programs``, of the share of the song's bars (by its first time signature; 4/4
    without one) in which that instrument starts a note: 1 = each plays in every bar."""
    ts = score.time_signatures[0] if score.time_signatures else None
    bar = score.ticks_per_beat * 4 * (ts.numerator / ts.denominator if ts else 1.0)
    onsets = [n.start for i in score.instruments for n in i.notes]
    if not programs or not onsets or bar <= 0:
        return 0.0
    n_bars = int(max(onsets) // bar) + 1
    shares = []
    for p in programs:
        bars = {
            int(n.start // bar)
            for i in score.instruments
            if (DRUMS_PROGRAM if i.is_drum else i.program) == p
            for n in i.notes
        }
        shares.append(len(bars) / n_bars)
    return float(np.mean(shares))


# ------------------------------------------------------------------------------------------------ attributes


def key_control(ckpt: Checkpoint, corpus: Corpus | None, opts: ControlOptions, log: Log) -> dict[str, Any]:
    cs = ckpt.tokenizer.conditions
    c = cs.get("key") if cs is not None else None
    if c is None:
        return {}
    counts: dict[str, int] = {}
    if corpus is not None:
        for p in corpus.pieces("train"):
            v = piece_value(c, p)
            if v is not None:
                counts[v] = counts.get(v, 0) + 1
    majors = sorted((v for v in c.values if v.endswith("major")), key=lambda v: -counts.get(v, 0))
    minors = sorted((v for v in c.values if v.endswith("minor")), key=lambda v: -counts.get(v, 0))
    asked = (majors[: MAX_KEYS // 2] + minors[: MAX_KEYS - MAX_KEYS // 2])[:MAX_KEYS] or list(
        c.values[:MAX_KEYS]
    )
    log(f"key: {opts.songs} songs for each of {', '.join(asked)}, and {opts.songs} asked for nothing")
    tok = ckpt.tokenizer
    free = [estimate_key(s) for s in _songs(ckpt, opts, None, salt=1)]
    rows: list[dict[str, Any]] = []
    for i, key in enumerate(asked):
        want = {"key": key}
        raw = _sample(ckpt, opts, want, salt=100 + i)
        got = [estimate_key(tok.decode(ids)) for ids in raw.ids]
        hits = sum(k is not None and k.name == key for k in got)
        mode = sum(k is not None and k.mode == parse_key(key).mode for k in got)
        chance = sum(k is not None and k.name == key for k in free)
        # what ``generate --key`` writes: transposed into the key, resampled where the mode is off

        def again(rows: int, attempt: int, salt: int = 100 + i, want: dict[str, str] = want) -> SampleOutput:
            return _sample(ckpt, opts, want, salt=salt + 1000 * attempt, n=rows)

        fitted, _ = fit_songs(raw, tok, Asked(key=parse_key(key)), again)
        final = sum(str(estimate_key(tok.decode(ids))) == key for ids in fitted.ids)
        rows.append(
            {
                "key": key,
                "songs": len(got),
                "correct": hits,
                "mode_correct": mode,
                "generated_in_key": final,
                "unconditioned_in_key": chance,
            }
        )
    n = sum(r["songs"] for r in rows)

    def share(field: str) -> float:
        return sum(r[field] for r in rows) / n if n else math.nan

    return {
        "rows": rows,
        "accuracy": share("correct"),
        "mode_accuracy": share("mode_correct"),
        "generated_accuracy": share("generated_in_key"),
        "chance": share("unconditioned_in_key"),
    }


def level_control(ckpt: Checkpoint, name: str, opts: ControlOptions, log: Log) -> dict[str, Any]:
    """``density`` (notes per quarter) or ``tempo`` (median bpm): per level, the songs' mean and the share
    in the level's corpus range."""
    cs = ckpt.tokenizer.conditions
    c = cs.get(name) if cs is not None else None
    if cs is None or c is None or name not in cs.bounds:
        return {}
    measure = note_density if name == "density" else median_tempo
    tok = ckpt.tokenizer
    bounds = level_bounds(tok, name) or cs.bounds[name]
    log(f"{name}: {opts.songs} songs for each level")
    rows: list[dict[str, Any]] = []
    for i, level in enumerate(v for v in LEVELS if v in c.values):
        salt = 200 + 10 * len(name) + i
        want = {name: level}
        raw = _sample(ckpt, opts, want, salt=salt)
        values = [measure(tok.decode(ids)) for ids in raw.ids]
        # what ``generate`` writes: songs outside the level's range sampled again

        def again(rows: int, attempt: int, salt: int = salt, want: dict[str, str] = want) -> SampleOutput:
            return _sample(ckpt, opts, want, salt=salt + 1000 * attempt, n=rows)

        fitted, _ = fit_songs(raw, tok, Asked(levels={name: (level, bounds)}), again)
        final = [measure(tok.decode(ids)) for ids in fitted.ids]
        rows.append(
            {
                "level": level,
                "songs": len(values),
                "mean": float(np.mean(values)) if values else math.nan,
                "in_range": sum(level_of(v, bounds) == level for v in values),
                "generated_in_range": sum(level_of(v, bounds) == level for v in final),
            }
        )
    means = [r["mean"] for r in rows]
    n = sum(r["songs"] for r in rows)
    return {
        "rows": rows,
        "bounds": list(bounds),
        "ordered": all(a < b for a, b in zip(means, means[1:])) and len(means) > 1,
        "in_range": sum(r["in_range"] for r in rows) / n if n else math.nan,
        "generated_in_range": sum(r["generated_in_range"] for r in rows) / n if n else math.nan,
    }


def instrument_control(
    ckpt: Checkpoint, corpus: Corpus | None, opts: ControlOptions, log: Log
) -> dict[str, Any]:
    from composer.sample import corpus_statistics

    programs, _ = corpus_statistics(ckpt)
    if not programs:
        return {}
    count = {p: 0 for p in programs}
    for piece in corpus.pieces("train") if corpus is not None else []:
        for p in piece.programs:
            if p in count:
                count[p] += 1
    top = sorted(programs, key=lambda p: (-count[p], p))[:MAX_PROGRAMS]
    sets = [{p} for p in top] + ([set(top[:2])] if len(top) >= 2 else [])
    rows: list[dict[str, Any]] = []
    for i, want in enumerate(sets):
        log(f"instruments: {opts.songs} songs of {instrument_names(sorted(want))}")
        songs = _songs(ckpt, opts, None, programs=want, salt=300 + i)
        played = [_played(s) for s in songs]
        rows.append(
            {
                "instruments": sorted(want),
                "songs": len(played),
                "only_these": sum(p <= want for p in played),
                "exact": sum(p == want for p in played),
                "bar_share": float(np.mean([bar_share(s, want) for s in songs])) if songs else math.nan,
            }
        )
    n = sum(r["songs"] for r in rows)
    return {
        "rows": rows,
        "only_these": sum(r["only_these"] for r in rows) / n if n else math.nan,
        "exact": sum(r["exact"] for r in rows) / n if n else math.nan,
        "bar_share": sum(r["bar_share"] * r["songs"] for r in rows) / n if n else math.nan,
    }


# ------------------------------------------------------------------------------------------------ labels


def label_features(score: Score) -> np.ndarray:
    """Music statistics a label classifier reads: pitch-class histogram (12, transposition-free: rotated
    to the estimated key), mode, note density, mean and spread of pitch, mean velocity and duration,
    polyphony, tempo."""
    notes = [
        (n.pitch, n.velocity, n.start, n.end) for i in score.instruments if not i.is_drum for n in i.notes
    ]
    drums = sum(len(i.notes) for i in score.instruments if i.is_drum)
    f = np.zeros(22)
    if not notes:
        return f
    a = np.array(notes, dtype=np.float64)
    key = estimate_key(score)
    tonic = key.tonic if key is not None else 0
    pc = np.bincount(((a[:, 0].astype(int) - tonic) % 12), minlength=12).astype(np.float64)
    f[:12] = pc / pc.sum()
    tpb = max(score.ticks_per_beat, 1)
    span = max(float(a[:, 3].max() - a[:, 2].min()) / tpb, 1.0)
    dur = (a[:, 3] - a[:, 2]) / tpb
    f[12] = 1.0 if key is not None and key.mode == "minor" else 0.0
    f[13] = math.log1p(len(a) / span)
    f[14] = a[:, 0].mean() / 127
    f[15] = a[:, 0].std() / 24
    f[16] = a[:, 1].mean() / 127
    f[17] = math.log1p(dur.mean())
    f[18] = math.log1p(dur.sum() / span)  # mean notes sounding
    f[19] = math.log(median_tempo(score) / 120)
    f[20] = math.log1p(drums / span)
    f[21] = a[:, 1].std() / 64
    return f


class LabelClassifier:
    """Multinomial logistic regression (L2, full-batch gradient descent) on standardised features."""

    def __init__(self, classes: Sequence[str], l2: float = 1e-2, steps: int = 2000, lr: float = 0.5) -> None:
        self.classes = list(classes)
        self.l2, self.steps, self.lr = l2, steps, lr
        self.mu = np.zeros(0)
        self.sd = np.ones(0)
        self.w = np.zeros((0, 0))

    def fit(self, x: np.ndarray, y: Sequence[str]) -> LabelClassifier:
        idx = np.array([self.classes.index(v) for v in y])
        self.mu, self.sd = x.mean(0), x.std(0) + 1e-6
        z = np.hstack([(x - self.mu) / self.sd, np.ones((len(x), 1))])
        k = len(self.classes)
        onehot = np.eye(k)[idx]
        w = np.zeros((z.shape[1], k))
        for _ in range(self.steps):
            p = _softmax(z @ w)
            grad = z.T @ (p - onehot) / len(z) + self.l2 * np.vstack([w[:-1], np.zeros((1, k))])
            w -= self.lr * grad
        self.w = w
        return self

    def predict(self, x: np.ndarray) -> list[str]:
        z = np.hstack([(x - self.mu) / self.sd, np.ones((len(x), 1))])
        return [self.classes[i] for i in (z @ self.w).argmax(1)]


def _softmax(a: np.ndarray) -> np.ndarray:
    e = np.exp(a - a.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def label_control(
    ckpt: Checkpoint, c: Condition, corpus: Corpus, opts: ControlOptions, log: Log
) -> dict[str, Any]:
    from composer.nll import piece_nlls

    tok = ckpt.tokenizer
    base = corpus.tokenizer
    train = [(p, v) for p in corpus.pieces("train") if (v := piece_value(c, p)) in c.values]
    val = [(p, v) for p in corpus.pieces("val") if (v := piece_value(c, p)) in c.values]
    if len({v for _, v in train}) < 2 or not val:
        return {"label": c.column, "skipped": "too few labelled pieces in the training and validation splits"}
    log(f"label {c.column}: a classifier on {len(train)} labelled training pieces")
    feats = np.stack([label_features(base.decode(corpus.piece_tokens(p))) for p, _ in train])
    clf = LabelClassifier(c.values).fit(feats, [v for _, v in train])
    real = clf.predict(np.stack([label_features(base.decode(corpus.piece_tokens(p))) for p, _ in val]))
    real_ok = sum(a == v for a, (_, v) in zip(real, val))
    rows: list[dict[str, Any]] = []
    for i, value in enumerate(c.values):
        songs = _songs(ckpt, opts, {c.name: value}, salt=400 + i)
        pred = clf.predict(np.stack([label_features(s) for s in songs]))
        rows.append({"value": value, "songs": len(songs), "recognised": sum(p == value for p in pred)})
    # conditional likelihood: each held-out piece under its own label and under every other
    k = tok.condition_count
    better = total = 0
    for p, v in val:
        ids = corpus.piece_tokens(p)
        nll = {
            u: float(
                piece_nlls(ckpt.model, [tok.condition(ids, {c.name: u})], pad_id=int(tok.pad_id))[0][k:].sum()
            )
            for u in c.values
        }
        for u in c.values:
            if u != v:
                total += 1
                better += nll[v] < nll[u]
    n = sum(r["songs"] for r in rows)
    return {
        "label": c.column,
        "rows": rows,
        "songs_recognised": sum(r["recognised"] for r in rows) / n if n else math.nan,
        "real_recognised": real_ok / len(val),
        "real_pieces": len(val),
        "own_label_likelier": better / total if total else math.nan,
        "pairs": total,
    }


# ------------------------------------------------------------------------------------------------ all


def measure_controls(
    ckpt: Checkpoint, corpus: Corpus | None, opts: ControlOptions | None = None, log: Log | None = None
) -> dict[str, Any]:
    """Every control of ``ckpt`` measured (see the module docstring); ``corpus`` (the training corpus)
    for the key counts and the label checks, which are left out without it."""
    opts = opts or ControlOptions()
    say = log or (lambda msg: None)
    if opts.songs < 1 or opts.bars < 1:
        raise ConfigError(f"controls need at least 1 song of at least 1 bar, got {opts.songs} of {opts.bars}")
    was = torch.get_num_threads()
    out: dict[str, Any] = {"songs_per_value": opts.songs, "bars": opts.bars}
    try:
        out["key"] = key_control(ckpt, corpus, opts, say)
        out["density"] = level_control(ckpt, "density", opts, say)
        out["tempo"] = level_control(ckpt, "tempo", opts, say)
        out["instruments"] = instrument_control(ckpt, corpus, opts, say)
        cs = ckpt.tokenizer.conditions
        out["labels"] = (
            [label_control(ckpt, c, corpus, opts, say) for c in cs.labels]
            if cs is not None and corpus
            else []
        )
    finally:
        torch.set_num_threads(was)
    return out


def controls_table(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(control, measured, target) rows for printing."""
    rows: list[tuple[str, str, str]] = []
    k = result.get("key") or {}
    if k:
        rows.append(
            (
                "key",
                f"condition alone {k['accuracy']:.0%} in the asked key (asked for nothing: "
                f"{k['chance']:.0%}), {k.get('mode_accuracy', math.nan):.0%} in its mode; as generate "
                f"writes them (transposed, resampled) {k.get('generated_accuracy', math.nan):.0%}",
                ">= 80%",
            )
        )
    for name in ("density", "tempo"):
        d = result.get(name) or {}
        if d:
            means = ", ".join(f"{r['level']} {r['mean']:.2f}" for r in d["rows"])
            verdict = "ordered" if d["ordered"] else "NOT ordered"
            unit = "notes/quarter" if name == "density" else "bpm"
            rows.append(
                (
                    name,
                    f"{means} {unit}: {verdict}; condition alone {d['in_range']:.0%} in the asked level's "
                    f"range, as generate writes them (resampled) {d.get('generated_in_range', math.nan):.0%}",
                    "ordered, >= 70%",
                )
            )
    ins = result.get("instruments") or {}
    if ins:
        rows.append(
            (
                "instruments",
                f"{ins['only_these']:.0%} only the asked ones, {ins['exact']:.0%} all of them; each "
                f"plays in {ins.get('bar_share', math.nan):.0%} of the bars",
                "100%",
            )
        )
    for lab in result.get("labels") or []:
        if "skipped" in lab:
            rows.append((f"label {lab['label']}", f"skipped: {lab['skipped']}", ""))
            continue
        rows.append(
            (
                f"label {lab['label']}",
                f"songs recognised {lab['songs_recognised']:.0%}, held-out real pieces "
                f"{lab['real_recognised']:.0%}; own label likelier {lab['own_label_likelier']:.0%} "
                f"of {lab['pairs']} pairs",
                "songs >= real; > 50%",
            )
        )
    return rows


def labelled_corpus(ckpt: Checkpoint, data: str | None) -> Corpus | None:
    """The corpus the label and key checks read: ``data`` where it is a corpus, else the checkpoint's
    training corpus where it still exists; None otherwise."""
    from pathlib import Path

    from composer.corpus import MANIFEST
    from composer.evaluate import open_matching_corpus

    for where in (data, ckpt.corpus_path):
        if where is not None and (Path(where) / MANIFEST).is_file():
            return open_matching_corpus(Path(where), ckpt.tokenizer)
    return None
