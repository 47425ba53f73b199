"""The evaluation report as text (the table ``composer evaluate`` prints) and as JSON.

The report is the dict ``composer.evaluate.evaluate_checkpoint`` assembles; this module only formats it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from composer.musicstats import ONE_PITCH_SHARE, SILENCE_S


def _clean(obj: object) -> object:
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


def _f(x: object, spec: str = ".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def format_report(r: dict[str, Any]) -> str:
    """The table ``composer evaluate`` prints."""
    lines = _data_lines(r) + [""] + _likelihood_lines(r)
    if r.get("long_range"):
        lines += [""] + _long_range_lines(r["long_range"])
    if r.get("music"):
        lines += [""] + _music_lines(r["music"])
    if r.get("form"):
        lines += [""] + _form_lines(r["form"])
    return "\n".join(lines)


def _data_lines(r: dict[str, Any]) -> list[str]:
    d = r["data"]
    lines = [f"checkpoint  {r['checkpoint']} (step {r['step']}, {r['encoding']} encoding, "
             f"{r['parameters']:,} parameters)"]  # fmt: skip
    where = f"{d['path']}, validation split" if d["kind"] == "corpus" else f"{d['path']} (MIDI)"
    lines.append(f"data        {where}: {d['pieces']} pieces, {r['tokens']:,} tokens, {r['notes']:,} notes")
    for f in d["failed"][:10]:
        lines.append(f"  skipped {f['path']}: {f['reason']}")
    if len(d["failed"]) > 10:
        lines.append(f"  ... and {len(d['failed']) - 10} more skipped")
    return lines


def _likelihood_lines(r: dict[str, Any]) -> list[str]:
    lines = [f"{'likelihood':<32}{'nats/token':>11}{'nats/note':>11}{'perplexity':>12}"]
    rows = [("LSTM (this checkpoint)", r)]
    cache = r.get("cache")
    if cache:
        rows.append(("LSTM + cache", cache))
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
    if cache:
        c = cache["config"]
        lines.append(
            f"  cache: theta {c['theta']:g}, lambda {c['lam']:g}, size {c['size']} "
            "(fitted by composer fit-cache; --no-cache: without it)"
        )
    return lines


def _long_range_lines(lr: dict[str, Any]) -> list[str]:
    n = lr["buckets"][0]["targets"] if lr["buckets"] else 0
    lines = [
        f"long-range context: {n:,} targets at positions >= {lr['min_position']} "
        f"in {lr['eligible_pieces']} pieces"
    ]
    if not n:
        return lines + ["  no piece is that long; try smaller --distances"]
    cached = lr.get("cache") is not None
    if cached:
        lines.append(f"  {'':<17}{' LSTM ':-^31} {' LSTM + cache ':-^31}")
    head = f"{'full NLL':>10}{'reset NLL':>11}{'gain':>10}"
    lines.append(f"  {'history cut to':<17}{head}{' ' + head if cached else ''}{'copyable':>10}")
    for bk in lr["buckets"]:
        row = f"  {str(bk['distance']) + ' tokens':<17}" + _nll_cells(bk)
        if cached:
            row += " " + _nll_cells(bk["cache"] or {})
        lines.append(row + f"{_f(bk.get('copyable'), '.1%'):>10}")
    lines.append("  gain = reset - full, nats/token; > 0: the model uses context older than that")
    lines.append(
        "  copyable = share of the targets that copying predicts: the token after the latest earlier "
        "occurrence of"
    )
    lines.append(
        f"  the same {lr.get('copy_context', '')} tokens, ending at least that far back "
        "(what copying old material could give)"
    )
    return lines


def _nll_cells(x: dict[str, Any]) -> str:
    return f"{_f(x.get('nll_full')):>10}{_f(x.get('nll_reset')):>11}{_f(x.get('gain'), '+.4f'):>10}"


def _form_lines(f: dict[str, Any]) -> list[str]:
    s, ref = f["samples"], f["reference"]
    lines = [
        f"form: samples vs reference (bars; a repeat is a bar equal to one >= {f['min_lag']} bars earlier)",
        f"  {'':<38}{'samples':>10}{'reference':>11}",
    ]

    def row(name: str, a: object, b: object, spec: str = ".1%") -> None:
        lines.append(f"  {name:<38}{_f(a, spec):>10}{_f(b, spec):>11}")

    row("repeated bars, exact", s["exact"], ref["exact"])
    row("repeated bars, up to transposition", s["transposed"], ref["transposed"])
    for lag in f["lags"]:
        k = lag - 1
        a = s["profile"][k] if k < len(s["profile"]) else None
        b = ref["profile"][k] if k < len(ref["profile"]) else None
        row(f"same as the bar {lag} before", a, b)
    loops = "loops (one or two bars over and over)"
    lines.append(
        f"  {loops:<38}{str(s['loops']) + ' of ' + str(s['pieces']):>10}"
        f"{str(ref['loops']) + ' of ' + str(ref['pieces']):>11}"
    )
    return lines


def _music_lines(m: dict[str, Any]) -> list[str]:
    lines = [
        f"music: {m['sample_pieces']} samples vs {m['reference_pieces']} reference pieces "
        "(Yang & Lerch 2018: OA 1 and KL 0 = same distribution)",
        f"  {'feature':<16}{'OA':>8}{'KL':>9}",
    ]
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
        f"  degenerate samples: {ds['degenerate']} of {ds['pieces']} "
        f"(reference {dr['degenerate']} of {dr['pieces']}): silence > {SILENCE_S:g} s {ds['silence']}, "
        f"one pitch > {ONE_PITCH_SHARE:.0%} {ds['one_pitch']},"
    )
    lines.append(f"    cut by the length limit {ds['cut']}, no notes {ds['no_notes']}")
    lines.append(f"  samples: {m['samples_source']}")
    for f in m["samples_failed"][:5]:
        lines.append(f"  skipped sample {f['path']}: {f['reason']}")
    return lines
