"""Music statistics sampled at each validation (``--music-stats``) leave the run's course alone.

(They were ``composer.evaluate.sampled_music_stats``; training now samples them itself.)
"""

from __future__ import annotations

from pathlib import Path

import torch

from composer.train import train
from tests.helpers_train import build_tiny_corpus, tiny_config


def test_music_stats_change_neither_the_losses_nor_the_global_rng(tmp_path: Path) -> None:
    corpus = build_tiny_corpus(tmp_path, n=6)
    runs = {}
    for music in (0, 2):
        torch.manual_seed(0)
        result = train(
            corpus,
            tmp_path / f"run-{music}",
            tiny_config(max_steps=6, eval_every=3, music_samples=music),
            progress=False,
            plot=False,
        )
        runs[music] = (result.train_losses, result.val_loss, torch.get_rng_state())
    assert runs[2][0] == runs[0][0] and runs[2][1] == runs[0][1]
    assert torch.equal(runs[2][2], runs[0][2])
