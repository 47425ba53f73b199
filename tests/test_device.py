"""Device selection: what ``--device`` accepts, and what it says when the hardware is not there."""

from __future__ import annotations

import pytest
import torch

from composer import device as dev
from composer.errors import ConfigError


def test_auto_falls_back_to_the_cpu_and_names_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "mps_available", lambda: False)
    assert dev.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match=r"^device must be one of auto, cpu, cuda, mps, got 'tpu'$"):
        dev.resolve_device("tpu")
    with pytest.raises(ConfigError, match="'cuda' was requested but no CUDA GPU is available"):
        dev.resolve_device("cuda")
    with pytest.raises(ConfigError, match="'mps' was requested but Apple MPS is not available"):
        dev.resolve_device("mps")


def test_auto_prefers_cuda_then_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert dev.resolve_device("auto") == torch.device("cuda", 0)
    assert dev.resolve_device("auto", local_rank=3) == torch.device("cuda", 3)  # torchrun: own GPU
    assert dev.resolve_device("cuda:2") == torch.device("cuda", 2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "mps_available", lambda: True)
    assert dev.resolve_device("auto") == torch.device("mps")


def test_an_explicit_gpu_index_is_refused_under_torchrun(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ConfigError, match="'cuda:1': under torchrun each process takes its own GPU"):
        dev.resolve_device("cuda:1", local_rank=0)


def test_cpu_threads_are_one_per_four_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    for cores, threads in ((1, 1), (2, 1), (8, 2), (16, 4), (64, 8)):
        monkeypatch.setattr(dev.os, "sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert dev.auto_threads() == threads
    before = torch.get_num_threads()
    try:
        assert dev.set_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
