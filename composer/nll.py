"""Negative log-likelihood of token sequences under the model: the one place it is computed.

``window_nll`` is the core, a window of inputs against its targets with the LSTM state carried in and
out; the training step, training validation (``composer.train.validate``) and ``piece_nlls`` all use it.
``piece_nlls`` streams whole pieces from their start and returns every target token's NLL, for
``composer evaluate`` and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from composer.errors import ComposerError
from composer.model import State

#: Tokens per chunk when streaming a piece (the state carries across chunks).
CHUNK = 512
#: Pieces streamed side by side.
BATCH_PIECES = 16


def window_nll(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    state: State | None,
    *,
    ignore_index: int = -100,
    reduction: str = "none",
) -> tuple[torch.Tensor, State]:
    """``inputs``/``targets`` (B, T) -> the targets' NLL in nats (float32; (B*T,) or summed) and the state.

    Targets equal to ``ignore_index`` (e.g. PAD) count zero. Run it under the caller's autocast, if any;
    the loss is taken in float32 whatever the logits' dtype.
    """
    logits, state = model(inputs, state)  # (B, T, V)
    nll = F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(),  # (B, T, V) -> (B*T, V)
        targets.reshape(-1),  # (B, T) -> (B*T,)
        ignore_index=ignore_index,
        reduction=reduction,
    )
    return nll, state


def piece_nlls(
    model: nn.Module,
    pieces: Sequence[np.ndarray],
    *,
    chunk: int = CHUNK,
    batch_pieces: int = BATCH_PIECES,
    pad_id: int = 0,
) -> list[np.ndarray]:
    """Per piece, the NLL (nats) of tokens 1..n-1 given everything before them in the piece.

    Pieces are streamed side by side (longest first, padded at the end) ``chunk`` tokens at a time with
    the LSTM state carried from each piece's start, so each token costs one step however deep it lies.
    """
    if chunk < 1:
        raise ComposerError(f"chunk must be at least 1, got {chunk}")
    device = next(model.parameters()).device
    out: list[np.ndarray] = [np.zeros(0)] * len(pieces)
    order = sorted(range(len(pieces)), key=lambda i: -len(pieces[i]))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for b0 in range(0, len(order), batch_pieces):
                group = [i for i in order[b0 : b0 + batch_pieces] if len(pieces[i]) >= 2]
                if not group:
                    continue
                longest = max(len(pieces[i]) for i in group)
                arr = np.full((len(group), longest), pad_id, dtype=np.int64)  # (pieces, longest)
                for r, i in enumerate(group):
                    arr[r, : len(pieces[i])] = pieces[i]
                tokens = torch.from_numpy(arr).to(device)
                nll = np.zeros((len(group), longest - 1), dtype=np.float64)  # target t+1 given 0..t
                state: State | None = None
                for s in range(0, longest - 1, chunk):
                    e = min(s + chunk, longest - 1)
                    loss, state = window_nll(model, tokens[:, s:e], tokens[:, s + 1 : e + 1], state)
                    nll[:, s:e] = loss.view(len(group), e - s).cpu().double().numpy()  # (B*T,) -> (B, T)
                for r, i in enumerate(group):
                    out[i] = nll[r, : len(pieces[i]) - 1]
    finally:
        if was_training:
            model.train()
    return out
