"""``composer fit-cache``, the cache line of ``composer info``, and ``composer evaluate --cache``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

from composer.cache import CacheConfig
from composer.checkpoint import save_cache
from composer.cli import main
from composer.train import train
from tests.helpers_train import build_tiny_corpus, make_midi_files, tiny_config

torch.set_num_threads(1)


def _strip_cache(folder: Path) -> None:
    """Remove any cache from the checkpoints under ``folder`` (training may fit one at its end)."""
    for meta_file in folder.glob("*/checkpoint.json"):
        meta = json.loads(meta_file.read_text())
        meta.pop("cache", None)
        meta_file.write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(corpus, a run of 2 steps, a run of 4 steps), both without a cache."""
    tmp = tmp_path_factory.mktemp("cache")
    corpus = build_tiny_corpus(tmp, n=6)
    for steps in (2, 4):
        train(
            corpus,
            tmp / f"run{steps}",
            tiny_config(max_steps=steps, eval_every=2),
            progress=False,
            plot=False,
        )
        _strip_cache(tmp / f"run{steps}")
    return corpus, tmp / "run2", tmp / "run4"


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, [*args])


def _stored(folder: Path) -> dict | None:
    return json.loads((folder / "checkpoint.json").read_text()).get("cache")


def test_fit_cache_writes_best_and_last_and_info_shows_it(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, src, _ = trained
    run = tmp_path / "run"
    shutil.copytree(src, run)
    res = _run("info", str(run))
    assert res.exit_code == 0, res.output
    assert "cache  none (composer fit-cache CHECKPOINT fits one)" in res.output

    res = _run("fit-cache", str(run), "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "fitting the cache of best and last" in res.output  # the progress line
    best, last = _stored(run / "best"), _stored(run / "last")
    assert best is not None and best == last  # one model (the same weights): one fit, stored in both
    assert best["fit"]["split"] == "val" and best["fit"]["targets"] > 0
    assert best["fit"]["nll_cache"] <= best["fit"]["nll_model"]  # lambda 0 is in the grid
    c = best["config"]
    assert f"{best['fit']['nll_model']:.4f} nats/token without the cache" in res.output
    assert (
        str(run / "best" / "checkpoint.json") in res.output
        and str(run / "last" / "checkpoint.json") in res.output
    )

    for folder in (run, run / "last"):
        info = _run("info", str(folder)).output
        line = next(x for x in info.splitlines() if x.strip().startswith("cache "))
        if c["lam"] > 0:
            assert f"theta {c['theta']:g}, lambda {c['lam']:g}, size {c['size']}" in line
        else:
            assert "off" in line
        assert f"{best['fit']['targets']:,} validation tokens" in line
        assert f"{best['fit']['nll_model']:.2f} -> {best['fit']['nll_cache']:.2f} nats/token" in line


def test_fit_cache_fits_best_and_last_apart_when_their_weights_differ(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    corpus, run2, run4 = trained
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(run2 / "best", run / "best")  # step 2
    shutil.copytree(run4 / "last", run / "last")  # step 4
    midi = tmp_path / "midi"
    make_midi_files(midi, n=2, seed=4, bars=8)
    res = _run("fit-cache", str(run), str(midi), "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "cache of best (step 2)" in res.output and "cache of last (step 4)" in res.output
    best, last = _stored(run / "best"), _stored(run / "last")
    assert best is not None and last is not None
    assert best["fit"]["nll_model"] != last["fit"]["nll_model"]  # each scored with its own weights
    assert best["fit"]["data"] == str(midi) and best["fit"]["split"] is None
    assert f"tokens of {midi}" in _run("info", str(run / "last")).output
    # one checkpoint folder given: only that one is written
    single = tmp_path / "single"
    shutil.copytree(run2 / "best", single)
    res = _run("fit-cache", str(single), str(corpus), "--tokens", "50", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert _stored(single) is not None and _stored(single)["fit"]["targets"] == 50


def test_cache_without_a_fitted_cache_is_a_one_line_error(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    corpus, src, _ = trained
    res = _run("evaluate", str(src), str(corpus), "--cache", "--samples", "0", "--device", "cpu")
    assert res.exit_code != 0
    assert f"run composer fit-cache {src} first" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    # a cache fitted as useless (lambda 0) is off: evaluate runs without it, and --cache says why not
    ck = tmp_path / "ck"
    shutil.copytree(src / "best", ck)
    save_cache(
        ck, CacheConfig(theta=0.3, lam=0.0, size=512), {"nll_model": 2.0, "nll_cache": 2.0, "targets": 9}
    )
    assert "off (lambda 0" in _run("info", str(ck)).output
    res = _run("evaluate", str(ck), str(corpus), "--samples", "0", "--distances", "", "--device", "cpu")
    assert res.exit_code == 0, res.output
    assert "LSTM + cache" not in res.output
    res = _run("evaluate", str(ck), str(corpus), "--cache", "--samples", "0", "--device", "cpu")
    assert res.exit_code != 0 and "its fitted cache is off" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_fit_cache_errors_are_one_line(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, src, _ = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, message in (
        ([str(tmp_path / "nope")], "no such checkpoint"),
        ([str(src), str(empty)], "no MIDI files"),
    ):
        res = _run("fit-cache", *args, "--device", "cpu")
        assert res.exit_code != 0 and message in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
