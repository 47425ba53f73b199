"""Negative log-likelihood of token sequences under the model: the one place it is computed.

``window_nll`` is the core, a window of inputs against its targets with the LSTM state carried in and
out; the training step, ``validate`` and ``piece_nlls`` all use it.

* ``piece_nlls`` streams whole pieces from their start and returns every target token's NLL, for
  ``composer evaluate`` and the benchmarks.
* ``validate`` is training's validation: the validation pieces streamed window by window as training
  streams its pieces (``composer.batching``), summed over processes, in nats per token and per note.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from composer.batching import Batcher, PieceStream, TokenStore
from composer.device import autocast
from composer.distributed import DistInfo, all_reduce_sum
from composer.errors import ComposerError
from composer.model import LSTMModel, State, detach_state, reset_rows

if TYPE_CHECKING:  # pragma: no cover
    from composer.tokenizer import Tokenizer

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


@dataclass
class Validation:
    loss: float  # nats per token
    nats_per_note: float
    tokens: int
    notes: int


@torch.no_grad()
def validate(
    model: LSTMModel,
    store: TokenStore,
    tokenizer: Tokenizer,
    *,
    batch_size: int,
    window: int,
    max_batches: int = 0,
    dtype: torch.dtype | None = None,
    dist_info: DistInfo | None = None,
) -> Validation | None:
    """Validation loss, streamed like training (state carried through each piece), deterministic.

    Notes are counted from ``store.piece_ids`` (on the host with ``keep_host``, or streamed).
    ``max_batches`` > 0 stops after that many windows (the same pieces every time); ``dtype`` is the
    autocast dtype, if any.
    Losses and counts are summed over the processes of ``dist_info``. Returns ``None`` when there is
    nothing to evaluate on any process.
    """
    dist_info = dist_info or DistInfo()
    was_training = model.training
    model.eval()
    device = store.device
    pad_id = int(tokenizer.pad_id)
    acc = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    nll = torch.zeros((), dtype=acc, device=device)
    evaluated = np.zeros(len(store), dtype=np.int64)  # targets evaluated per piece (a prefix)
    if len(store):
        stream = PieceStream(store.lengths, batch_size, window, rng=None, loop=False)
        batcher = Batcher(store, window, pad_id, None)
        state = model.init_state(batch_size, device)
        n = 0
        while not (max_batches and n >= max_batches):
            plan = stream.next()
            if stream.exhausted:  # every row idle: each piece was streamed to its end
                break
            inputs, targets, keep = batcher.gather(plan)
            state = reset_rows(state, keep)
            with autocast(device, dtype):
                loss, state = window_nll(model, inputs, targets, state, ignore_index=pad_id, reduction="sum")
            nll += loss.to(acc)
            state = detach_state(state)
            act = plan.piece >= 0
            evaluated[plan.piece[act]] = plan.cursor[act] + plan.n_valid[act]
            n += 1
    notes = _notes_in_prefixes(store, evaluated, tokenizer)
    totals = torch.tensor([nll.item(), float(evaluated.sum()), float(notes)], dtype=acc, device=device)
    totals = all_reduce_sum(totals, dist_info)
    if was_training:
        model.train()
    total_nll, total_tokens, total_notes = totals.tolist()
    if total_tokens <= 0:
        return None
    return Validation(
        loss=total_nll / total_tokens,
        nats_per_note=total_nll / total_notes if total_notes > 0 else float("nan"),
        tokens=int(total_tokens),
        notes=int(total_notes),
    )


def _notes_in_prefixes(store: TokenStore, evaluated: np.ndarray, tokenizer: Tokenizer) -> int:
    """Notes among the targets ``evaluated[i]`` (a prefix, after BOS) of each piece ``i`` of ``store``."""
    notes = 0
    for i in np.flatnonzero(evaluated).tolist():
        ids = store.piece_ids(i)
        notes += int(tokenizer.note_count(ids[1 : 1 + int(evaluated[i])]))
    return notes
