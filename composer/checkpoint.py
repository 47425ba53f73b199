"""Checkpoints: safe to load (no pickle anywhere), written atomically, self-sufficient.

A run directory ``checkpoints/NAME/`` holds::

    last/              the newest state (written at every evaluation and at the end)
    best/              the state with the lowest validation loss so far
    metrics.csv        one row per optimizer step (train loss; validation columns at evaluations)
    loss.png           the loss curves, redrawn at every evaluation

and each checkpoint folder holds::

    model.safetensors  the network's weights
    state.safetensors  every other tensor needed to resume exactly: optimizer moments, the carried LSTM
                       state of every batch row, RNG states (uint8), the data order of every process
    checkpoint.json    format version, model config, tokenizer config and vocabulary, corpus fingerprint,
                       training config, step, data position, best validation loss, the run's arguments,
                       and the SHA-256 of both tensor files (a garbled file is refused, not half-loaded)

Tensors are only ever read with safetensors and everything else with ``json``: loading a checkpoint never
unpickles anything. A checkpoint folder is written as a whole into a temporary sibling folder (each file
flushed and fsynced), then swapped in with ``os.replace``; a crash at any moment leaves either the old or
the new checkpoint complete (at worst under the hidden name ``.last.old``, which loading falls back to).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from composer.cache import CacheConfig, CacheFit, fit_on_pieces
from composer.errors import CheckpointError, ComposerError
from composer.fsutil import atomic_write_text, describe_os_error
from composer.model import LSTMModel, ModelConfig

if TYPE_CHECKING:
    from composer.conditions import ConditionSet
    from composer.tokenizer import Tokenizer

FORMAT_VERSION = 1
KIND = "composer-lstm"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
META_FILE = "checkpoint.json"
LAST, BEST = "last", "best"
METRICS_FILE = "metrics.csv"
PLOT_FILE = "loss.png"
_TENSOR_REF = "__tensor__"


# ----------------------------------------------------------------------------------- tensors <-> JSON


def split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Copy ``obj`` with every tensor/ndarray leaf moved into ``tensors`` (and a reference left in place).

    The result is plain JSON (dict keys become strings); ``join_tensors`` reverses it.
    """
    if isinstance(obj, torch.Tensor | np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(obj)) if isinstance(obj, np.ndarray) else obj
        key = prefix or "tensor"
        if key in tensors:
            raise ValueError(f"duplicate tensor key {key}")
        tensors[key] = t.detach().to("cpu").contiguous().clone()
        return {_TENSOR_REF: key}
    if isinstance(obj, dict):
        return {
            str(k): split_tensors(v, f"{prefix}.{k}" if prefix else str(k), tensors) for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [split_tensors(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(obj)]
    if isinstance(obj, np.integer | np.floating | np.bool_):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint ({prefix})")


def join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``split_tensors`` (tuples come back as lists, keys as strings)."""
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR_REF}:
            key = obj[_TENSOR_REF]
            if key not in tensors:
                raise KeyError(f"tensor {key!r} is missing")
            return tensors[key]
        return {k: join_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [join_tensors(v, tensors) for v in obj]
    return obj


def optimizer_state_from_json(data: dict[str, Any]) -> dict[str, Any]:
    """``torch.optim`` keys per-parameter state by int; JSON made them strings."""
    return {"state": {int(k): v for k, v in data["state"].items()}, "param_groups": data["param_groups"]}


# ------------------------------------------------------------------------------------------- writing


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_checkpoint(
    path: str | os.PathLike[str],
    model_tensors: dict[str, torch.Tensor],
    state_tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
) -> Path:
    """Atomically (re)write the checkpoint folder ``path`` and return it.

    ``meta`` must be JSON-able; the format version and the tensor files' hashes are added here.
    """
    from safetensors.torch import save

    target = Path(path)
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    blobs = {
        MODEL_FILE: save({k: v.detach().cpu().contiguous() for k, v in model_tensors.items()}),
        STATE_FILE: save({k: v.detach().cpu().contiguous() for k, v in state_tensors.items()}),
    }
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        **meta,
        "files": {
            name: {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()} for name, b in blobs.items()
        },
    }
    blobs[META_FILE] = (json.dumps(meta, indent=1, sort_keys=False) + "\n").encode()

    tmp = parent / f".{target.name}.tmp-{os.getpid()}"
    old = parent / f".{target.name}.old"
    for stale in parent.glob(f".{target.name}.tmp-*"):  # left by a writer that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    try:
        for name, data in blobs.items():
            _write_file(tmp / name, data)
        _fsync_dir(tmp)
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(parent)
    except OSError as e:
        if not target.exists() and old.exists():  # put the previous checkpoint back
            os.replace(old, target)
        raise CheckpointError(
            f"{target}: cannot write the checkpoint ({describe_os_error(e)}); the previous one is kept"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    return target


# ------------------------------------------------------------------------------------------- reading


def _existing(folder: Path, name: str) -> Path | None:
    """``folder/name`` if complete, else the ``.name.old`` left by a crash in the middle of a swap."""
    for cand in (folder / name, folder / f".{name}.old"):
        if (cand / META_FILE).is_file():
            return cand
    return None


def resolve_checkpoint(path: str | os.PathLike[str], prefer: str = BEST) -> Path:
    """A checkpoint folder from a checkpoint folder or a run folder (``prefer``, then the other one)."""
    p = Path(path)
    if p.is_file() and p.name == META_FILE:
        p = p.parent
    if p.is_dir() and (p / META_FILE).is_file():
        return p
    if p.is_dir():
        order = (BEST, LAST) if prefer == BEST else (LAST, BEST)
        for name in order:
            found = _existing(p, name)
            if found is not None:
                return found
        raise CheckpointError(
            f"{p}: no checkpoint here (expected {META_FILE}, or a run folder with last/ or best/)"
        )
    if p.exists():
        raise CheckpointError(f"{p}: not a composer checkpoint (expected a checkpoint or run folder)")
    raise CheckpointError(f"{p}: no such checkpoint")


def find_last(run_dir: str | os.PathLike[str]) -> Path | None:
    """The ``last`` checkpoint of a run folder (or its crash-left backup), if there is one."""
    return _existing(Path(run_dir), LAST)


@dataclass
class RawCheckpoint:
    """A checkpoint's JSON and tensors, verified but not yet turned into objects."""

    path: Path
    meta: dict[str, Any]
    model_tensors: dict[str, torch.Tensor]
    _state_tensors: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self._state_tensors is None:
            self._state_tensors = _read_tensors(self.path / STATE_FILE, self.meta)
        return self._state_tensors


def _read_tensors(file: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    try:
        data = file.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{file}: cannot read ({e.strerror or e})") from None
    expected = meta.get("files", {}).get(file.name)
    if not isinstance(expected, dict):
        raise CheckpointError(f"{file}: not listed in {META_FILE}")
    if len(data) != expected.get("bytes"):
        raise CheckpointError(
            f"{file}: truncated or damaged ({len(data)} bytes, expected {expected.get('bytes')})"
        )
    if hashlib.sha256(data).hexdigest() != expected.get("sha256"):
        raise CheckpointError(f"{file}: damaged (content does not match the hash in {META_FILE})")
    try:
        return load(data)
    except Exception as e:  # safetensors raises its own error type on any malformed file
        raise CheckpointError(f"{file}: not a valid safetensors file ({type(e).__name__}: {e})") from None


def read_checkpoint(path: str | os.PathLike[str], prefer: str = BEST) -> RawCheckpoint:
    """Read and verify a checkpoint folder (or the best/last one of a run folder)."""
    folder = resolve_checkpoint(path, prefer)
    mfile = folder / META_FILE
    try:
        meta = json.loads(mfile.read_text())
    except OSError as e:
        raise CheckpointError(f"{mfile}: cannot read ({e.strerror or e})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{mfile}: truncated or not JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise CheckpointError(f"{mfile}: not a composer checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{mfile}: checkpoint format version {meta.get('format_version')!r} is not supported "
            f"(this composer reads version {FORMAT_VERSION})"
        )
    for key in ("model_config", "tokenizer_config", "vocab", "step", "files"):
        if key not in meta:
            raise CheckpointError(f"{mfile}: incomplete checkpoint ({key} missing)")
    return RawCheckpoint(folder, meta, _read_tensors(folder / MODEL_FILE, meta))


@dataclass
class Checkpoint:
    """A loaded model with everything needed to use it; no corpus required."""

    path: Path
    model: LSTMModel
    model_config: ModelConfig
    tokenizer: Tokenizer
    step: int
    best_val_loss: float | None
    corpus_fingerprint: str | None
    corpus_path: str | None
    train_config: dict[str, Any]
    meta: dict[str, Any]
    cache: CacheConfig | None = None  # fitted on the validation split (composer.cache), if it was


def cache_from_meta(meta: dict[str, Any], where: Path) -> CacheConfig | None:
    """The neural cache stored in a checkpoint's metadata, or None (never fitted, or fitted as useless)."""
    data = meta.get("cache")
    if data is None:
        return None
    try:
        config = CacheConfig.from_dict(dict(data.get("config", {})))
    except (ComposerError, AttributeError, TypeError) as e:
        raise CheckpointError(f"{where}: bad cache config ({e})") from None
    return config if config.enabled else None


def save_cache(path: str | os.PathLike[str], config: CacheConfig, fit: dict[str, Any]) -> list[Path]:
    """Store a fitted cache in a checkpoint (or in a run folder's ``best/`` and ``last/``); returns the
    checkpoint.json files rewritten. Only the JSON changes (atomically); the tensor files and their hashes
    stay as they are."""
    p = Path(path)
    folders = [p / name for name in (BEST, LAST) if (p / name / META_FILE).is_file()] or [
        resolve_checkpoint(p)
    ]
    written = []
    for folder in folders:
        mfile = folder / META_FILE
        try:
            meta = json.loads(mfile.read_text(encoding="utf-8"))
            meta["cache"] = {"config": config.to_dict(), "fit": fit}
            atomic_write_text(mfile, json.dumps(meta, indent=1, sort_keys=False) + "\n")
        except OSError as e:
            raise CheckpointError(f"{mfile}: {describe_os_error(e)}") from None
        written.append(mfile)
    return written


def build_tokenizer(meta: dict[str, Any], where: Path) -> Tokenizer:
    """The tokenizer a checkpoint was trained with, checked against the vocabulary stored with it."""
    from composer.tokenizer import TokenizerConfig, tokenizer_from_config

    try:
        conditions = conditions_from_meta(meta)
        tok = tokenizer_from_config(TokenizerConfig.from_dict(meta["tokenizer_config"]), conditions)
    except ComposerError as e:
        raise CheckpointError(f"{where}: bad tokenizer config ({e})") from None
    except (TypeError, KeyError) as e:
        raise CheckpointError(f"{where}: bad tokenizer config ({e!r})") from None
    if list(tok.vocab.tokens) != list(meta["vocab"]):
        raise CheckpointError(
            f"{where}: the stored vocabulary does not match what its tokenizer config builds "
            "(written by an incompatible composer version?)"
        )
    return tok


def conditions_from_meta(meta: dict[str, Any]) -> ConditionSet | None:
    """The conditions a checkpoint's model reads after BOS (``composer.conditions``); None for none."""
    from composer.conditions import ConditionSet

    data = meta.get("conditions")
    return None if data is None else ConditionSet.from_dict(data)


def model_from_raw(raw: RawCheckpoint, device: torch.device | str = "cpu") -> tuple[LSTMModel, ModelConfig]:
    where = raw.path / META_FILE
    try:
        config = ModelConfig.from_dict(raw.meta["model_config"])
    except ComposerError as e:
        raise CheckpointError(f"{where}: bad model config ({e})") from None
    except TypeError as e:
        raise CheckpointError(f"{where}: bad model config ({e})") from None
    if config.vocab_size != len(raw.meta["vocab"]):
        raise CheckpointError(
            f"{where}: model vocab_size {config.vocab_size} != vocabulary size {len(raw.meta['vocab'])}"
        )
    model = LSTMModel(config)
    try:
        model.load_state_dict(raw.model_tensors, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(
            f"{raw.path / MODEL_FILE}: weights do not fit the model config ({' '.join(first[:2])})"
        ) from None
    return model.to(device), config


def load_checkpoint(path: str | os.PathLike[str], device: torch.device | str = "cpu") -> Checkpoint:
    """Load a checkpoint folder, or a run folder's ``best`` (falling back to ``last``), for generation.

    The model is returned in eval mode on ``device``; its tokenizer is rebuilt from the stored config.
    Raises ``CheckpointError`` (one line naming the file) for anything missing, truncated or foreign.
    """
    raw = read_checkpoint(path, prefer=BEST)
    tokenizer = build_tokenizer(raw.meta, raw.path / META_FILE)
    model, config = model_from_raw(raw, device)
    model.eval()
    corpus = raw.meta.get("corpus") or {}
    best = raw.meta.get("best_val_loss")
    return Checkpoint(
        path=raw.path,
        model=model,
        model_config=config,
        tokenizer=tokenizer,
        step=int(raw.meta["step"]),
        best_val_loss=None if best is None else float(best),
        corpus_fingerprint=corpus.get("fingerprint"),
        corpus_path=corpus.get("path"),
        train_config=dict(raw.meta.get("train_config") or {}),
        meta=raw.meta,
        cache=cache_from_meta(raw.meta, raw.path / META_FILE),
    )


def fit_checkpoint_cache(
    path: str | os.PathLike[str], pieces: list[np.ndarray], say: Callable[[str], None] | None = None
) -> CacheFit | None:
    """Fit the neural cache of the checkpoint at ``path`` on held-out ``pieces`` (BOS ..., read as
    unconditioned where the model has conditions) and store it there."""
    if not pieces:
        return None
    ckpt = load_checkpoint(path)
    if say is not None:
        say("fitting the neural cache on the validation split")
    fit = fit_on_pieces(ckpt.model, [ckpt.tokenizer.condition(p) for p in pieces])
    save_cache(ckpt.path, fit.config, fit.to_dict())
    if say is not None:
        c = fit.config
        verdict = f"theta {c.theta:g}, lambda {c.lam:g}, size {c.size}" if c.enabled else "no gain, left off"
        nll = f"{fit.nll_model:.4f} -> {fit.nll_cache:.4f} nats/token on {fit.targets:,} tokens"
        say(f"cache: {verdict} ({nll})")
    return fit


def checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A summary of a checkpoint for ``composer info`` (reads the JSON and verifies the weights)."""
    raw = read_checkpoint(path, prefer=BEST)
    model, config = model_from_raw(raw)
    meta = raw.meta
    corpus = meta.get("corpus") or {}
    return {
        "checkpoint": str(raw.path),
        "step": meta.get("step"),
        "best_val_loss": meta.get("best_val_loss"),
        "best_step": meta.get("best_step"),
        "val_loss": meta.get("val_loss"),
        "val_nats_per_note": meta.get("val_nats_per_note"),
        "encoding": (meta.get("tokenizer_config") or {}).get("encoding"),
        "vocab_size": len(meta["vocab"]),
        "parameters": model.num_parameters(),
        "model_config": config.to_dict(),
        "corpus": corpus.get("path"),
        "corpus_fingerprint": corpus.get("fingerprint"),
        "train_config": meta.get("train_config"),
        "created": meta.get("created"),
        "composer_version": meta.get("composer_version"),
        "cache": meta.get("cache"),
        "conditions": meta.get("conditions"),
    }
