"""Training for long pieces: the cell penalty keeps carried cells bounded; the cache is fitted at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from composer.checkpoint import join_tensors, load_checkpoint, read_checkpoint
from composer.errors import ConfigError
from composer.model import cell_excess
from composer.train import train
from tests.helpers_train import build_tiny_corpus, tiny_config

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_corpus(tmp_path_factory.mktemp("corpus"), n=12, bars=16)


def test_cell_excess_is_zero_inside_the_limit_and_grows_outside() -> None:
    c = torch.tensor([[-1.0, 0.5, 2.0]])
    assert float(cell_excess(c, 2.0)) == 0.0
    assert float(cell_excess(c, 0.5)) == pytest.approx((0.25 + 0.0 + 2.25) / 3)


def test_cell_penalty_bounds_the_carried_cells(corpus: Path, tmp_path: Path) -> None:
    """With a strong penalty the carried state's cells end far smaller than without one."""
    peaks = {}
    for name, pen in (("off", 0.0), ("on", 10.0)):
        cfg = tiny_config(max_steps=40, eval_every=40, cell_penalty=pen, cell_limit=0.25, lr=3e-2)
        train(corpus, tmp_path / name, cfg, progress=False, plot=False)
        raw = read_checkpoint(tmp_path / name / "last")
        ts = join_tensors(raw.meta["train_state"], raw.state_tensors())
        c = ts["streams"][0]["lstm_state"][1]  # the rows' carried (h, c[, s])
        peaks[name] = float(c.abs().max())
    assert peaks["on"] < 0.6 * peaks["off"], peaks


def test_training_fits_the_cache_into_best(corpus: Path, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=10, eval_every=10, fit_cache=True)
    train(corpus, tmp_path / "run", cfg, progress=False, plot=False)
    meta = json.loads((tmp_path / "run" / "best" / "checkpoint.json").read_text())
    assert meta["cache"]["fit"]["targets"] > 0
    assert meta["cache"]["fit"]["nll_cache"] <= meta["cache"]["fit"]["nll_model"]
    ckpt = load_checkpoint(tmp_path / "run")
    assert (ckpt.cache is None) == (meta["cache"]["config"]["lam"] == 0)
    train(
        corpus,
        tmp_path / "off",
        tiny_config(max_steps=10, eval_every=10, fit_cache=False),
        progress=False,
        plot=False,
    )
    assert "cache" not in json.loads((tmp_path / "off" / "best" / "checkpoint.json").read_text())


@pytest.mark.parametrize("bad", [{"cell_penalty": -1.0}, {"cell_limit": -2.0}, {"fit_cache": "yes"}])
def test_bad_long_range_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ConfigError):
        tiny_config(**bad)


def test_chrono_init_sets_the_first_steps_biases(corpus: Path, tmp_path: Path) -> None:
    """With chrono_init the run starts from chrono biases: forget gates far above the default 1."""
    cfg = tiny_config(max_steps=1, eval_every=1, chrono_init=1000, lr=1e-6, min_lr=0.0, fit_cache=False)
    train(corpus, tmp_path / "run", cfg, progress=False, plot=False)
    model = load_checkpoint(tmp_path / "run" / "last").model
    h = model.config.hidden_size
    forget = model.lstm.bias_ih_l0.detach()[h : 2 * h]
    assert float(forget.max()) > 3.0 and float(forget.min()) >= -0.01
    torch.testing.assert_close(model.lstm.bias_ih_l0.detach()[:h], -forget, atol=1e-3, rtol=0)


@pytest.mark.parametrize("value", [1, 2, -5, 1.5])
def test_bad_chrono_init_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="chrono_init"):
        tiny_config(chrono_init=value)


@pytest.mark.parametrize(("given", "t_max"), [({}, 64), ({"window": 1}, 0), ({"chrono_init": 0}, 0)])
def test_chrono_is_on_by_default_at_twice_the_window(given: dict, t_max: int) -> None:
    assert tiny_config(**given).chrono_tokens == t_max  # tiny_config's window is 32


def test_chrono_init_0_keeps_the_plain_forget_bias(corpus: Path, tmp_path: Path) -> None:
    cfg = tiny_config(max_steps=1, eval_every=1, chrono_init=0, lr=1e-6, min_lr=0.0, fit_cache=False)
    train(corpus, tmp_path / "run", cfg, progress=False, plot=False)
    model = load_checkpoint(tmp_path / "run" / "last").model
    h = model.config.hidden_size
    torch.testing.assert_close(model.lstm.bias_ih_l0.detach()[h : 2 * h], torch.ones(h), atol=1e-3, rtol=0)
