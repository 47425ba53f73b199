"""Crash safety of what composer writes: atomic files, a full disk, one writer per folder."""

from __future__ import annotations

import errno
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from composer.corpus import Corpus, build_corpus
from composer.errors import ComposerError
from composer.fsutil import atomic_write, atomic_write_text, folder_lock
from tests.midi_factory import SCORES, write_score


def test_atomic_write_keeps_the_previous_file_when_the_disk_is_full(tmp_path):
    target = tmp_path / "f.json"
    atomic_write_text(target, "old")

    def full(fh):
        fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        ComposerError, match=r"f\.json: cannot write \(the disk is full\); the previous file is kept"
    ):
        atomic_write(target, full)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left behind


def test_corpus_build_on_a_full_disk_keeps_the_previous_corpus(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    write_score(SCORES["single"](), src / "a.mid")
    out = tmp_path / "corpus"
    build_corpus([src], out, workers=1)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    write_score(SCORES["multitrack_drums"](), src / "b.mid")

    import composer.corpus as corpus_mod

    real_fsync = corpus_mod.os.fsync

    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(corpus_mod.os, "fsync", fsync)
    with pytest.raises(ComposerError, match="the disk is full"):
        build_corpus([src], out, workers=1)
    monkeypatch.setattr(corpus_mod.os, "fsync", real_fsync)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before
    assert len(Corpus.open(out).pieces()) == 1


def _hold_lock(folder: str, ready, release) -> None:
    with folder_lock(Path(folder), "training run"):
        ready.set()
        release.wait(20)


def test_a_second_writer_gets_a_clear_error(tmp_path):
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        with (
            pytest.raises(ComposerError, match=r"a training run \(pid \d+\) is writing to this folder"),
            folder_lock(tmp_path, "corpus build"),
        ):
            pass
    finally:
        release.set()
        holder.join(20)
    with folder_lock(tmp_path, "corpus build"):  # free again once the holder is gone
        pass


def test_a_killed_holder_releases_the_lock(tmp_path):
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    assert ready.wait(20)
    holder.kill()  # SIGKILL: no cleanup code runs
    holder.join(20)
    deadline = time.time() + 5
    with folder_lock(tmp_path, "corpus build"):
        assert time.time() < deadline


def test_two_training_runs_on_one_folder_the_second_is_refused(tmp_path):
    from composer.train import train

    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    run_dir = tmp_path / "run"
    holder = ctx.Process(target=_hold_lock, args=(str(run_dir), ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(ComposerError, match=r"a training run \(pid \d+\) is writing to this folder"):
            train(tmp_path / "no-corpus-needed", run_dir, progress=False)
    finally:
        release.set()
        holder.join(20)


def test_checkpoint_write_on_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import torch

    import composer.checkpoint as ck

    meta = {"note": "first"}
    ck.write_checkpoint(tmp_path / "last", {"w": torch.ones(3)}, {}, meta)

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "_write_file", full)
    full_disk = r"cannot write the checkpoint \(the disk is full\); the previous one is kept"
    with pytest.raises(ComposerError, match=full_disk):
        ck.write_checkpoint(tmp_path / "last", {"w": torch.zeros(3)}, {}, {"note": "second"})
    import json

    assert json.loads((tmp_path / "last" / ck.META_FILE).read_text())["note"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temp folder left behind
