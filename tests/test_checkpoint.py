"""Checkpoints: exact round trip, self-sufficiency, atomic swap, and refusing anything unsafe or damaged."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from composer.checkpoint import (
    META_FILE,
    MODEL_FILE,
    STATE_FILE,
    checkpoint_info,
    join_tensors,
    load_checkpoint,
    optimizer_state_from_json,
    read_checkpoint,
    resolve_checkpoint,
    split_tensors,
    write_checkpoint,
)
from composer.errors import CheckpointError
from composer.train import train
from tests.helpers_train import build_tiny_corpus, tiny_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, torch.Tensor]]:
    """A 10-step run; returns (corpus, run folder, the weights the model had after its last step)."""
    tmp = tmp_path_factory.mktemp("ckpt")
    corpus = build_tiny_corpus(tmp, n=10)
    final: dict[str, torch.Tensor] = {}

    def grab(step: int, loss: float, model: torch.nn.Module) -> None:
        if step == 10:
            final.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    train(
        corpus, tmp / "run", tiny_config(max_steps=10, eval_every=5), progress=False, plot=False, on_step=grab
    )
    return corpus, tmp / "run", final


@pytest.fixture
def run_copy(trained: tuple[Path, Path, dict[str, torch.Tensor]], tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(trained[1], dst)
    return dst


def test_round_trip_gives_identical_logits_without_the_corpus(
    trained: tuple[Path, Path, dict[str, torch.Tensor]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus, run, final = trained
    moved = tmp_path / "elsewhere"
    shutil.copytree(run, moved)
    import composer.corpus

    def no_corpus(*a: object) -> None:
        raise AssertionError("loading a checkpoint must not open the corpus")

    monkeypatch.setattr(composer.corpus.Corpus, "open", no_corpus)
    ck = load_checkpoint(moved / "last")
    assert ck.step == 10 and not ck.model.training
    assert ck.tokenizer.vocab.size == ck.model_config.vocab_size
    assert ck.corpus_path == str(corpus) and ck.corpus_fingerprint
    assert ck.train_config["max_steps"] == 10
    # what generation needs to know about the corpus travels with the checkpoint
    assert ck.meta["corpus"]["programs"] == [0, 32, 128] and ck.meta["corpus"]["notes_per_second"] > 0
    from composer.model import LSTMModel

    ref = LSTMModel(ck.model_config)
    ref.load_state_dict(final)
    ref.eval()
    ids = torch.tensor([[ck.tokenizer.bos_id, 10, 20, 30, 40, 50]])
    with torch.no_grad():
        a, sa = ck.model(ids)
        b, sb = ref(ids)
    assert torch.equal(a, b) and torch.equal(sa[0], sb[0])


def test_run_folder_resolves_to_best_then_last(run_copy: Path) -> None:
    best = read_checkpoint(run_copy).path
    assert best.name == "best"
    shutil.rmtree(run_copy / "best")
    assert load_checkpoint(run_copy).path.name == "last"
    (run_copy / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty: no checkpoint here"):
        resolve_checkpoint(run_copy / "empty")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(run_copy / "missing")


def test_crash_in_the_middle_of_a_swap_keeps_a_loadable_checkpoint(run_copy: Path) -> None:
    os.replace(run_copy / "last", run_copy / ".last.old")  # as if killed between the two renames
    shutil.rmtree(run_copy / "best")
    assert load_checkpoint(run_copy).step == 10
    # and a resume picks it up
    corpus = Path(read_checkpoint(run_copy).meta["corpus"]["path"])
    res = train(
        corpus, run_copy, tiny_config(max_steps=12, eval_every=5), resume=True, progress=False, plot=False
    )
    assert res.steps == 12 and (run_copy / "last").is_dir() and not (run_copy / ".last.old").exists()


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (self.marker, "pwned"))  # type: ignore[return-value]


def _rehash(folder: Path, name: str) -> None:
    """Make checkpoint.json vouch for a replaced file, so only the format check can stop it."""
    import hashlib

    meta = json.loads((folder / META_FILE).read_text())
    data = (folder / name).read_bytes()
    meta["files"][name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (folder / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize("victim", [MODEL_FILE, STATE_FILE])
def test_a_pickle_payload_is_never_unpickled(run_copy: Path, tmp_path: Path, victim: str) -> None:
    marker = tmp_path / "marker"
    folder = run_copy / "last"
    (folder / victim).write_bytes(pickle.dumps({"weights": _Payload(marker)}))
    _rehash(folder, victim)
    with pytest.raises(CheckpointError, match=f"{victim}: not a valid safetensors file"):
        raw = read_checkpoint(folder)
        raw.state_tensors()
    assert not marker.exists()
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="model.pt: not a composer checkpoint"):
        load_checkpoint(tmp_path / "model.pt")


def test_truncated_garbled_and_foreign_checkpoints_name_the_file(run_copy: Path) -> None:
    folder = run_copy / "last"
    model = folder / MODEL_FILE
    data = model.read_bytes()

    model.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated or damaged") as e:
        load_checkpoint(folder)
    assert "\n" not in str(e.value)

    garbled = bytearray(data)
    garbled[len(garbled) // 2] ^= 0xFF
    model.write_bytes(bytes(garbled))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: damaged"):
        load_checkpoint(folder)
    model.write_bytes(data)
    assert load_checkpoint(folder).step == 10

    meta_text = (folder / META_FILE).read_text()
    (folder / META_FILE).write_text(meta_text[: len(meta_text) // 3])
    with pytest.raises(CheckpointError, match=r"checkpoint\.json: truncated or not JSON"):
        load_checkpoint(folder)

    meta = json.loads(meta_text)
    (folder / META_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_checkpoint(folder)

    (folder / META_FILE).write_text(json.dumps({**meta, "vocab": meta["vocab"][:-1]}))
    with pytest.raises(CheckpointError, match="vocabulary does not match"):
        load_checkpoint(folder)


def test_info_summarises_the_run(trained: tuple[Path, Path, dict[str, torch.Tensor]]) -> None:
    corpus, run, _ = trained
    info = checkpoint_info(run)
    from composer.corpus import Corpus

    assert info["step"] == 10 and info["encoding"] == "beat"
    conditions = info["conditions"]  # appended after the corpus's tokens: NONE + each value, per condition
    extra = sum(len(c["values"]) + 1 for c in conditions["conditions"]) if conditions else 0
    assert info["vocab_size"] == Corpus.open(corpus).tokenizer.vocab.size + extra
    assert info["corpus"] == str(corpus) and info["best_val_loss"] is not None
    assert info["parameters"] > 0 and info["model_config"]["hidden_size"] == 32


def test_split_and_join_tensors_round_trip_an_optimizer_state() -> None:
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.AdamW([p], lr=0.1)
    p.grad = torch.randn(3, 2)
    opt.step()
    tensors: dict[str, torch.Tensor] = {}
    doc = split_tensors({"optimizer": opt.state_dict(), "arr": np.arange(4), "n": np.int64(3)}, "", tensors)
    text = json.dumps(doc)  # plain JSON
    back = join_tensors(json.loads(text), tensors)
    sd = optimizer_state_from_json(back["optimizer"])
    opt2 = torch.optim.AdamW([torch.nn.Parameter(p.detach().clone())], lr=0.1)
    opt2.load_state_dict(sd)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert back["arr"].tolist() == [0, 1, 2, 3] and back["n"] == 3


def test_write_checkpoint_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "ck"
    write_checkpoint(
        target,
        {"w": torch.zeros(2)},
        {},
        {"model_config": {}, "tokenizer_config": {}, "vocab": [], "step": 1},
    )
    write_checkpoint(
        target, {"w": torch.ones(2)}, {}, {"model_config": {}, "tokenizer_config": {}, "vocab": [], "step": 2}
    )
    raw = read_checkpoint(target)
    assert raw.meta["step"] == 2 and torch.equal(raw.model_tensors["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]  # no temp or backup folders left behind
