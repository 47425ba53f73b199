"""benchmarks/long_lag.py's machinery at a small lag: the trainer, with chrono init and a window spanning
the lag, learns to recall a note across the distractors (Hochreiter & Schmidhuber 1997, Experiment 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmarks import long_lag
from composer.corpus import Corpus
from composer.model import LSTMModel, ModelConfig

torch.set_num_threads(1)


def test_lag_pieces_open_and_end_with_the_same_note(tmp_path: Path) -> None:
    long_lag.make_files(tmp_path / "midi", 30, 8, distractors=4, seed=3)
    from composer.corpus import build_corpus

    build_corpus([tmp_path / "midi"], tmp_path / "c", encoding="beat", workers=1, val_fraction=0.5)
    corpus = Corpus.open(tmp_path / "c")
    tok = corpus.tokenizer
    px, py, end = (tok.vocab.id(f"PITCH_{p}") for p in (long_lag.X, long_lag.Y, long_lag.END))
    for p in corpus.pieces("train") + corpus.pieces("val"):
        ids = corpus.piece_tokens(p)
        where = np.flatnonzero((ids == px) | (ids == py))
        assert len(where) == 2 and ids[where[0]] == ids[where[1]]
        assert 27 <= where[1] - where[0] <= 30 + 3 + 4  # about q, plus up to q/10 distractor notes
        assert end in ids[where[1] - 4 : where[1]]
    # an untrained model's recall is a coin toss, measured on every validation piece
    model = LSTMModel(ModelConfig(vocab_size=tok.vocab.size, embed_dim=8, hidden_size=8, num_layers=1))
    check = long_lag.recall_test(model, corpus)
    assert 0.0 <= check.accuracy <= 1.0 and check.lag_tokens >= 30


def test_the_trainer_learns_a_lag_of_ten_tokens(tmp_path: Path) -> None:
    """Through build_corpus and train as the benchmark runs them, with the tied output layer; solved in
    750-1300 steps for 4 of 4 seeds when measured, so 3000 steps leave room (untied, seed 1337 was not
    solved in 3000 steps). The row's numbers agree with each other."""
    args = long_lag.parser().parse_args(
        ["--pieces", "400", "--check-every", "50", "--max-steps", "3000", "--minutes", "8", "--tied"]
    )
    row = long_lag.run_one(args, 10, 10 + 1 + 64, tmp_path)
    assert row["solved"], row
    assert row["accuracy"] >= 0.95 and row["steps"] < 3000 and row["steps"] % 50 == 0
    assert 8 <= row["measured_lag"] <= 13
    assert row["sequences"] == row["steps"] * args.batch  # every piece fits one window
