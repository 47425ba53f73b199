"""Batches for training and validation: truncated backpropagation through time over whole pieces.

How the data flows
------------------
A split's pieces are copied once into ONE token tensor on the device (``TokenStore``), int16 where the
vocabulary fits (it always does in practice; int32 otherwise), widened to int64 per batch; or, where a copy
would not fit (``composer.train`` decides: on the CPU always, the token file being in host memory already),
streamed: each batch row reads its piece from the memory-mapped corpus file when it starts it.
``batch_size`` rows each stream through a piece, ``window`` tokens at a time (``PieceStream``): the LSTM
state a row ends one window with is carried (detached) by the training loop into its next window, so the
model learns dependencies far longer than a window. When a row's piece ends it takes the next piece of a
shuffled order and its state is zeroed (``WindowPlan.new``). A window never spans two pieces: the tail of
a piece is padded and PAD targets are ignored by the loss. Batches are gathered by index arithmetic (row
start + arange), no DataLoader (``Batcher``).

A conditioned model's pieces are packed with their condition tokens after BOS (``prefixes``; see
``composer.conditions``). Each row draws an augmentation when it starts a piece (``Augmenter``, from an
``AugmentConfig``: transposition that keeps every note of the piece inside the tokenizer's pitch range,
never applied to drums, and that moves the key condition with the notes; velocity jitter; time stretch
where the tokenizer ``supports_time_stretch``; which conditions drop to NONE), applied on the device
through precomputed lookup tables. ``composer.train``'s docstring draws the batch layout.

A ``PieceStream``'s whole position (order, every row's piece, cursor and augmentation, its RNG) is in its
``state_dict``, which the checkpoint saves so that a resumed run continues exactly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from composer.errors import CheckpointError, CorpusError

if TYPE_CHECKING:  # pragma: no cover
    from composer.corpus import Piece
    from composer.tokenizer import Tokenizer
    from composer.train_config import AugmentConfig


#: Per row, the augmentation's table indices: pitch, other (velocity x stretch), dropped conditions.
AUG_COLUMNS = 3


class TokenStore:
    """One split's pieces, packed into one token tensor on the device or streamed from the corpus file,
    plus the per-piece table.

    Packed (``stream=False``): the pieces are copied into ``tokens``, back to back; ``offsets``/``lengths``
    index that tensor (not the corpus file). ``drums`` marks tokens that belong to drum notes (never
    transposed); it is built only when asked for. ``prefixes`` (per piece, its condition tokens) are packed
    right after each piece's BOS.

    Streamed (``stream=True``): nothing is copied; ``tokens`` and ``drums`` are None and ``piece_ids`` reads a
    piece (BOS, its prefix, the rest) from the memory-mapped corpus file when a batch row starts it
    (``Batcher`` keeps one piece per row). The windows are the same, token for token, as packed.
    """

    def __init__(
        self,
        corpus_tokens: np.ndarray,
        pieces: Sequence[Piece],
        device: torch.device,
        tokenizer: Tokenizer | None = None,
        drums: bool = False,
        keep_host: bool = False,
        prefixes: Sequence[np.ndarray] | None = None,
        vocab_size: int | None = None,
        stream: bool = False,
    ) -> None:
        if vocab_size is None and tokenizer is not None:
            vocab_size = tokenizer.vocab.size
        extra = [0] * len(pieces) if prefixes is None else [len(x) for x in prefixes]
        lengths = np.array([p.length + e for p, e in zip(pieces, extra, strict=True)], dtype=np.int64)
        offsets = np.zeros(len(pieces), dtype=np.int64)
        if len(pieces):
            offsets[1:] = np.cumsum(lengths)[:-1]
        self.device = device
        self.streamed = stream
        self.offsets = offsets
        self.lengths = lengths
        self.notes = np.array([p.notes for p in pieces], dtype=np.int64)
        self.pitch_min = np.array(
            [-1 if p.pitch_min is None else p.pitch_min for p in pieces], dtype=np.int64
        )
        self.pitch_max = np.array(
            [-1 if p.pitch_max is None else p.pitch_max for p in pieces], dtype=np.int64
        )
        self.tokens: torch.Tensor | None = None  # (N,) int16/int32, all pieces back to back (packed only)
        self.drums: torch.Tensor | None = None
        self.host: np.ndarray | None = None
        self._tokenizer = tokenizer if drums else None  # the drum mask's reader, when one is asked for
        self._source = corpus_tokens
        self._file_offsets = np.array([p.offset for p in pieces], dtype=np.int64)
        self._prefixes = prefixes
        if stream:
            return
        packed = np.empty(int(lengths.sum()), dtype=token_dtype(vocab_size))
        for i, off in enumerate(offsets.tolist()):
            packed[off : off + lengths[i]] = self._read(i)
        self.tokens = torch.from_numpy(packed).to(device)
        if self._tokenizer is not None:
            self.drums = torch.from_numpy(_drum_mask(self._tokenizer, packed, offsets)).to(device)
        self.host = packed if keep_host else None

    def __len__(self) -> int:
        return len(self.lengths)

    def _read(self, i: int) -> np.ndarray:
        """Piece ``i`` from the corpus file: BOS, its condition tokens, the rest."""
        off = int(self._file_offsets[i])
        n = int(self.lengths[i]) - (0 if self._prefixes is None else len(self._prefixes[i]))
        src = np.asarray(self._source[off : off + n])
        if self._prefixes is None:
            return src
        return np.concatenate([src[:1], np.asarray(self._prefixes[i], dtype=src.dtype), src[1:]])

    def piece_ids(self, i: int) -> np.ndarray:
        """Piece ``i`` as the windows see it (int64, on the host)."""
        if self.host is not None:
            off = int(self.offsets[i])
            return self.host[off : off + int(self.lengths[i])].astype(np.int64)
        if self.tokens is not None:
            off = int(self.offsets[i])
            return self.tokens[off : off + int(self.lengths[i])].cpu().numpy().astype(np.int64)
        return self._read(i).astype(np.int64)

    @property
    def marks_drums(self) -> bool:
        return self._tokenizer is not None

    def piece_drums(self, i: int, ids: np.ndarray) -> np.ndarray | None:
        """Which of piece ``i``'s tokens (``ids``, from ``piece_ids``) belong to drum notes; None when
        the store was not asked for drums."""
        if self._tokenizer is None:
            return None
        return np.asarray(self._tokenizer.drum_context(ids), dtype=np.bool_)


#: A split whose packed tokens would take more than this share of the device's memory is streamed from the
#: memory-mapped corpus file instead of copied (``streams``).
DEVICE_SHARE = 0.25


def streams(device: torch.device, tokens: int, drums: bool = False) -> bool:
    """Whether a split of ``tokens`` tokens is streamed rather than packed onto ``device``: on the CPU
    always (the token file is in host memory already; a copy would only double it), elsewhere when the
    packed copy (int16, plus a byte a token for the drum marks) would take more than ``DEVICE_SHARE`` of
    the device's memory."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:  # MPS: memory shared with the host
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return tokens * (3 if drums else 2) > DEVICE_SHARE * total


def token_dtype(vocab_size: int | None) -> type[np.signedinteger[Any]]:
    """The narrowest signed type (torch indexes with signed integers) that holds every id of a vocabulary
    of ``vocab_size``; int32 where the size is not known."""
    return np.int16 if vocab_size is not None and vocab_size <= np.iinfo(np.int16).max + 1 else np.int32


def _drum_mask(
    tokenizer: Tokenizer, packed: np.ndarray, offsets: np.ndarray, chunk: int = 1 << 24
) -> np.ndarray:
    """``tokenizer.drum_context`` over all pieces, in chunks cut at piece starts (its state resets at BOS)."""
    mask = np.zeros(len(packed), dtype=np.bool_)
    starts = offsets.tolist() + [len(packed)]
    i = 0
    while i < len(starts) - 1:
        j = i + 1
        while j < len(starts) - 1 and starts[j + 1] - starts[i] <= chunk:
            j += 1
        a, b = starts[i], starts[j]
        mask[a:b] = np.asarray(tokenizer.drum_context(packed[a:b]), dtype=np.bool_)
        i = j
    return mask


@dataclass
class WindowPlan:
    """Host-side description of one window for every row (all arrays have shape (batch,))."""

    piece: np.ndarray  # piece index per row, -1 for a row with nothing left (validation only)
    cursor: np.ndarray  # position in the piece of the row's first input token
    n_valid: np.ndarray  # targets that are real tokens (the rest is PAD); 0 for an idle row
    new: np.ndarray  # bool: the row starts a piece here, so its carried state is zeroed
    aug: np.ndarray  # (batch, 3) int: pitch-, other- and drop-table index of the row's augmentation


class PieceStream:
    """Assigns pieces to batch rows and walks each row through its piece one window at a time.

    With ``loop`` the pieces are visited in a shuffled order, reshuffled every epoch, forever; without it
    (validation) in index order once, after which rows go idle. ``sample_aug(piece)`` (optional) draws the
    augmentation for a row starting ``piece``. All randomness comes from ``rng``, saved with the state.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        window: int,
        rng: np.random.Generator | None = None,
        loop: bool = True,
        sample_aug: Callable[[int], tuple[int, int, int]] | None = None,
    ) -> None:
        if loop and len(lengths) == 0:
            raise CorpusError("no training pieces to stream")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.window = window
        self.rng = rng
        self.loop = loop
        self.sample_aug = sample_aug
        self.order = np.arange(len(self.lengths), dtype=np.int64)
        if loop and rng is not None:
            rng.shuffle(self.order)
        self.ptr = 0
        self.epoch = 0
        self.piece = np.full(batch_size, -1, dtype=np.int64)
        self.cursor = np.zeros(batch_size, dtype=np.int64)
        self.aug = np.zeros((batch_size, AUG_COLUMNS), dtype=np.int64)

    def _next_piece(self) -> int:
        if self.ptr >= len(self.order):
            if not self.loop:
                return -1
            if self.rng is not None:
                self.rng.shuffle(self.order)
            self.ptr = 0
            self.epoch += 1
        p = int(self.order[self.ptr])
        self.ptr += 1
        return p

    def next(self) -> WindowPlan:
        active = self.piece >= 0
        remaining = np.where(active, self.lengths[np.maximum(self.piece, 0)] - 1 - self.cursor, 0)
        new = remaining <= 0  # piece finished (or never started): take the next one
        for r in np.flatnonzero(new).tolist():  # O(rows starting a piece) bookkeeping
            p = self._next_piece()
            self.piece[r] = p
            self.cursor[r] = 0
            if p >= 0 and self.sample_aug is not None:
                self.aug[r] = self.sample_aug(p)
            else:
                self.aug[r] = 0
        active = self.piece >= 0
        remaining = np.where(active, self.lengths[np.maximum(self.piece, 0)] - 1 - self.cursor, 0)
        plan = WindowPlan(
            piece=self.piece.copy(),
            cursor=self.cursor.copy(),
            n_valid=np.minimum(remaining, self.window),
            new=new & active,
            aug=self.aug.copy(),
        )
        self.cursor += self.window
        return plan

    @property
    def exhausted(self) -> bool:
        return not self.loop and self.ptr >= len(self.order) and bool((self.piece < 0).all())

    def state_dict(self) -> dict[str, Any]:
        return {
            "order": self.order.copy(),
            "ptr": self.ptr,
            "epoch": self.epoch,
            "piece": self.piece.copy(),
            "cursor": self.cursor.copy(),
            "aug": self.aug.copy(),
            "rng": None if self.rng is None else self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        order = np.asarray(state["order"], dtype=np.int64)
        piece = np.asarray(state["piece"], dtype=np.int64)
        if sorted(order.tolist()) != list(range(len(self.lengths))) or piece.shape != (self.batch_size,):
            raise CheckpointError("saved data position does not fit this corpus split and batch size")
        self.order = order.copy()
        self.ptr = int(state["ptr"])
        self.epoch = int(state["epoch"])
        self.piece = piece.copy()
        self.cursor = np.asarray(state["cursor"], dtype=np.int64).copy()
        aug = np.asarray(state["aug"], dtype=np.int64).reshape(self.batch_size, -1)
        self.aug = np.zeros((self.batch_size, AUG_COLUMNS), dtype=np.int64)
        self.aug[:, : aug.shape[1]] = aug  # saved before conditions: no drop column
        if self.rng is not None and state.get("rng") is not None:
            self.rng.bit_generator.state = state["rng"]


class Augmenter:
    """Lookup tables for on-the-fly augmentation, built once, and the per-piece draw.

    ``pitch`` is (2 * transpose + 1, vocab): row ``k`` transposes by ``k - transpose`` semitones.
    ``other`` is (velocity options x stretch options, vocab): velocity jitter then time stretch.
    ``drop`` is (2 ** conditions, vocab): row ``m`` sets the conditions of the bits of ``m`` to NONE; each
    condition drops with probability ``condition_dropout``.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        config: AugmentConfig,
        store: TokenStore,
        device: torch.device,
        condition_dropout: float = 0.0,
    ) -> None:
        self.store = store
        self.t = config.transpose
        # the vocabulary's pitch range: a note shifted outside it would stay put (``transpose_lut``)
        self.pitch_lo, self.pitch_hi = int(tokenizer.config.pitch_min), int(tokenizer.config.pitch_max)
        vocab = tokenizer.vocab.size
        identity = np.arange(vocab, dtype=np.int64)
        self.pitch: torch.Tensor | None = None
        if self.t > 0:
            table = np.stack([tokenizer.transpose_lut(s) for s in range(-self.t, self.t + 1)])
            self.pitch = torch.from_numpy(table.astype(np.int64)).to(device)
        vel = [tokenizer.velocity_lut(d) for d in range(-config.velocity_jitter, config.velocity_jitter + 1)]
        factors = [1.0]
        if tokenizer.supports_time_stretch and config.time_stretch > 0:
            factors = np.linspace(
                1 - config.time_stretch, 1 + config.time_stretch, config.time_stretch_steps
            ).tolist()
        stretch = [np.asarray(tokenizer.time_stretch_lut(float(f)), dtype=np.int64) for f in factors]
        other = np.stack([s[np.asarray(v, dtype=np.int64)] for v in vel for s in stretch])  # stretch(vel(id))
        self.n_other = len(other)
        self.other: torch.Tensor | None = None
        if not all((row == identity).all() for row in other):
            self.other = torch.from_numpy(other).to(device)
        self.drop: torch.Tensor | None = None
        self.n_cond = tokenizer.condition_count
        self.p_drop = float(condition_dropout)
        if tokenizer.conditions is not None and self.p_drop > 0:
            cs, k = tokenizer.conditions, self.n_cond
            table = np.stack(
                [cs.drop_lut(tokenizer.vocab, [s for s in range(k) if m >> s & 1]) for m in range(1 << k)]
            )
            self.drop = torch.from_numpy(table).to(device)

    def sample(self, rng: np.random.Generator, piece: int) -> tuple[int, int, int]:
        t_idx = 0
        if self.pitch is not None:
            lo, hi = -self.t, self.t
            pmin, pmax = int(self.store.pitch_min[piece]), int(self.store.pitch_max[piece])
            if pmin >= 0:  # the piece's range counts notes outside the vocabulary's too (not encoded)
                pmin, pmax = max(pmin, self.pitch_lo), min(pmax, self.pitch_hi)
                lo, hi = max(lo, self.pitch_lo - pmin), min(hi, self.pitch_hi - pmax)
            shift = int(rng.integers(lo, hi + 1)) if hi >= lo else 0
            t_idx = shift + self.t
        o_idx = int(rng.integers(0, self.n_other)) if self.n_other > 1 else 0
        d_idx = 0
        if self.drop is not None:
            bits = rng.random(self.n_cond) < self.p_drop
            d_idx = int(sum(1 << s for s in np.flatnonzero(bits).tolist()))
        return t_idx, o_idx, d_idx


class Batcher:
    """Turns a ``WindowPlan`` into device tensors: by index arithmetic on a packed store's token tensor, or,
    for a streamed store, from the pieces its rows are on (each read from the corpus file when a row starts
    it), copied to the device per window."""

    def __init__(self, store: TokenStore, window: int, pad_id: int, augmenter: Augmenter | None) -> None:
        self.store = store
        self.window = window
        self.pad_id = pad_id
        self.aug = augmenter
        self.device = store.device
        self.positions = torch.arange(window + 1, device=self.device)  # (T+1,)
        self.offsets = store.offsets
        self._rows: dict[int, tuple[int, np.ndarray, np.ndarray | None]] = {}  # row -> piece, ids, drums

    def _streamed(self, plan: WindowPlan, n_tok: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(B, T+1) token ids (0 where not real) and drum marks of each row's window, on the host."""
        rows = len(plan.piece)
        x = np.zeros((rows, self.window + 1), dtype=np.int64)
        drums = np.zeros(x.shape, dtype=np.bool_) if self.store.marks_drums else None
        for r in np.flatnonzero(n_tok > 0).tolist():
            p = int(plan.piece[r])
            held = self._rows.get(r)
            if held is None or held[0] != p:
                ids = self.store.piece_ids(p)
                held = self._rows[r] = (p, ids, self.store.piece_drums(p, ids))
            c, n = int(plan.cursor[r]), int(n_tok[r])
            x[r, :n] = held[1][c : c + n]
            if drums is not None and held[2] is not None:
                drums[r, :n] = held[2][c : c + n]
        return x, drums

    def gather(self, plan: WindowPlan) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> inputs (B, T), targets (B, T) (PAD where not real), keep (B,) bool (False: zero the state)."""
        piece = np.maximum(plan.piece, 0)
        start = np.where(plan.piece >= 0, self.offsets[piece] + plan.cursor, 0)
        n_tok = np.where(plan.n_valid > 0, plan.n_valid + 1, 0)  # inputs + the final target
        host = np.concatenate([np.stack([start, n_tok, plan.new.astype(np.int64)], axis=1), plan.aug], axis=1)
        meta = torch.from_numpy(host).to(self.device, non_blocking=True)  # (B, 6), one transfer
        start_t, n_tok_t, new_t, t_idx, o_idx, d_idx = meta.unbind(1)
        valid = self.positions[None, :] < n_tok_t[:, None]  # (B, T+1)
        drums: torch.Tensor | None = None
        if self.store.tokens is None:  # streamed
            host_x, host_d = self._streamed(plan, n_tok)
            x = torch.from_numpy(host_x).to(self.device)  # (B, T+1)
            if host_d is not None:
                drums = torch.from_numpy(host_d).to(self.device)
        else:
            idx = start_t[:, None] + self.positions[None, :]  # (B,) + (T+1,) -> (B, T+1)
            idx = torch.where(valid, idx, 0)
            x = self.store.tokens[idx].long()  # (B, T+1)
            if self.store.drums is not None:
                drums = self.store.drums[idx]
        if self.aug is not None:
            if self.aug.pitch is not None:
                shifted = self.aug.pitch[t_idx[:, None], x]  # (B, 1) row, (B, T+1) id -> (B, T+1)
                if drums is not None:
                    shifted = torch.where(drums, x, shifted)
                x = shifted
            if self.aug.other is not None:
                x = self.aug.other[o_idx[:, None], x]  # (B, T+1)
            if self.aug.drop is not None:
                x = self.aug.drop[d_idx[:, None], x]  # (B, T+1): dropped conditions read NONE
        x = x.masked_fill(~valid, self.pad_id)
        return x[:, :-1], x[:, 1:], new_t == 0  # (B, T), (B, T), (B,)
