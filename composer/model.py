"""The music model: token embedding -> multi-layer LSTM -> dropout -> projection to the vocabulary.

``forward(tokens, state) -> (logits, state)`` serves training (window after window with the recurrent state
carried over: truncated backpropagation through time) and evaluation; ``step`` is its one-token form for
generation (tested equal to ``forward``); ``hidden`` and ``step_hidden`` stop before the projection, for
the neural cache (composer/cache.py). ``state`` is the LSTM's ``(h, c)`` pair, each
``(num_layers, batch, hidden_size)``, or ``None`` for a fresh start.

A model with ``condition_slots`` (a conditioned run: composer/conditions.py's tokens after each piece's
BOS) also feeds the conditions to the LSTM at every step, as Magenta's conditional Performance RNN does:
each slot's latest condition token is remembered in a third state tensor ``s`` (1, batch, slots) (the
token's value + 1; 0 = none read yet) and the sum of the slots' condition embeddings is added to every
input embedding. A condition read once after BOS and then carried by the cells alone was too weak a
signal to steer the songs (README: Steering). Everything that resets, detaches or copies a state treats
the tensors alike: every one is (layers or 1, batch, features).

On CUDA ``torch.nn.LSTM`` runs the fused cuDNN kernels; nothing here is device specific.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from composer.configs import check_range, known_fields
from composer.errors import ConfigError

#: ``(h, c)``, or ``(h, c, s)`` for a model with condition slots; batch is dimension 1 of every tensor.
State = tuple[torch.Tensor, ...]

#: Architecture presets (everything but the vocabulary size); README's ``composer train`` table and its
#: Benchmarks section say what each is for and how fast it trains:
#: - small: the default, for CPU training.
#: - medium: for corpora of a few hundred pieces and up.
#: - large: Performance RNN's 3 x 512, meant for a GPU.
PRESETS: dict[str, dict[str, Any]] = {
    "small": {"embed_dim": 256, "hidden_size": 256, "num_layers": 2, "dropout": 0.2, "tie_weights": True},
    "medium": {"embed_dim": 384, "hidden_size": 384, "num_layers": 2, "dropout": 0.2, "tie_weights": True},
    "large": {"embed_dim": 512, "hidden_size": 512, "num_layers": 3, "dropout": 0.3, "tie_weights": True},
}

_MAX_VOCAB = 1 << 20
_MAX_WIDTH = 65536
_MAX_LAYERS = 64


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network (its weights live in the checkpoint)."""

    vocab_size: int
    embed_dim: int = 256
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.2
    tie_weights: bool = True
    #: ``(first id, count)`` of each condition's token range, in slot order; () for an unconditioned model.
    condition_slots: tuple[tuple[int, int], ...] = ()

    def __post_init__(self) -> None:
        check_range("vocab_size", self.vocab_size, 4, _MAX_VOCAB)
        check_range("embed_dim", self.embed_dim, 1, _MAX_WIDTH)
        check_range("hidden_size", self.hidden_size, 1, _MAX_WIDTH)
        check_range("num_layers", self.num_layers, 1, _MAX_LAYERS)
        check_range("dropout", self.dropout, 0.0, 0.95, (int, float))
        object.__setattr__(self, "dropout", float(self.dropout))
        if not isinstance(self.tie_weights, bool):
            raise ConfigError(f"tie_weights must be true or false, got {self.tie_weights!r}")
        if self.tie_weights and self.embed_dim != self.hidden_size:
            raise ConfigError(
                f"tie_weights needs embed_dim == hidden_size, got embed_dim={self.embed_dim}, "
                f"hidden_size={self.hidden_size}"
            )
        object.__setattr__(self, "condition_slots", _check_slots(self.condition_slots, self.vocab_size))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = known_fields(cls, data, "model")
        if "vocab_size" not in data:
            raise ConfigError("model config is missing vocab_size")
        return cls(**data)

    @classmethod
    def from_preset(cls, preset: str, vocab_size: int, **overrides: Any) -> ModelConfig:
        """A preset's architecture for ``vocab_size``; ``None`` overrides keep the preset's value."""
        if preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
        values = dict(PRESETS[preset])
        values.update({k: v for k, v in overrides.items() if v is not None})
        # A width override on a tied preset unties it instead of failing, unless tying was asked for.
        if overrides.get("tie_weights") is None and values["embed_dim"] != values["hidden_size"]:
            values["tie_weights"] = False
        return cls.from_dict({"vocab_size": vocab_size, **values})


def _check_slots(slots: Any, vocab_size: int) -> tuple[tuple[int, int], ...]:
    """``slots`` as a tuple of ``(first id, count)`` pairs: in order, inside the vocabulary, disjoint."""
    if not isinstance(slots, (list, tuple)):
        raise ConfigError(f"condition_slots must be a list of [first id, count] pairs, got {slots!r:.80}")
    out: list[tuple[int, int]] = []
    end = 0
    for slot in slots:
        if (
            not isinstance(slot, (list, tuple))
            or len(slot) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in slot)
        ):
            raise ConfigError(f"condition_slots: each slot is [first id, count], got {slot!r:.80}")
        first, count = slot
        if count < 1 or first < end or first + count > vocab_size:
            raise ConfigError(
                f"condition_slots: slot {list(slot)} must hold at least one id, after the previous slot "
                f"(id {end} on) and inside the vocabulary (ids below {vocab_size})"
            )
        out.append((first, count))
        end = first + count
    return tuple(out)


class LSTMModel(nn.Module):
    """Embedding -> ``num_layers`` LSTM -> dropout -> linear head (tied to the embedding if asked)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.lstm = nn.LSTM(
            input_size=config.embed_dim,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        if config.tie_weights:
            # The head reuses embed.weight (vocab, hidden); only its bias is its own.
            self.head: nn.Linear | None = None
            self.head_bias = nn.Parameter(torch.zeros(config.vocab_size))
        else:
            self.head = nn.Linear(config.hidden_size, config.vocab_size)
        slots = config.condition_slots
        self.cond_embed: nn.Embedding | None = None
        # (K,) each: the slots' first ids, sizes and first rows in cond_embed (buffers: they follow .to())
        self.slot_first: torch.Tensor
        self.slot_size: torch.Tensor
        self.slot_offset: torch.Tensor
        if slots:
            # Row 0 (no condition read yet) is zero; slot j's value v (1-based) is row offsets[j] + v.
            self.cond_embed = nn.Embedding(1 + sum(n for _, n in slots), config.embed_dim, padding_idx=0)
            sizes = [n for _, n in slots]
            offsets = [sum(sizes[:j]) for j in range(len(slots))]
            self.register_buffer("slot_first", torch.tensor([f for f, _ in slots]), persistent=False)
            self.register_buffer("slot_size", torch.tensor(sizes), persistent=False)
            self.register_buffer("slot_offset", torch.tensor(offsets), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.embed.weight, mean=0.0, std=0.05)
        for name, param in self.lstm.named_parameters():
            if name.startswith("weight_hh"):
                for gate in param.data.chunk(4, dim=0):
                    nn.init.orthogonal_(gate)
            elif name.startswith("weight_ih"):
                nn.init.xavier_uniform_(param.data)
            else:
                # Biases: zero, except a forget-gate bias of 1 (gate order i, f, g, o) so that
                # early on the cell remembers instead of forgetting.
                param.data.zero_()
                if name.startswith("bias_ih"):
                    h = self.config.hidden_size
                    param.data[h : 2 * h] = 1.0
        if self.head is not None:
            nn.init.xavier_uniform_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        if self.cond_embed is not None:
            nn.init.normal_(self.cond_embed.weight, mean=0.0, std=0.05)
            with torch.no_grad():
                self.cond_embed.weight[0].zero_()

    def chrono_init(self, t_max: float, generator: torch.Generator | None = None) -> None:
        """Chrono initialisation (Tallec & Ollivier 2018): forget-gate biases log(U(1, t_max - 1)) and
        input-gate biases their negation, so that cells start with time scales spread up to ``t_max``
        tokens instead of all near 1/(1 - sigmoid(1)) ~ 3.7."""
        if t_max < 3:
            raise ConfigError(f"chrono t_max must be at least 3 tokens, got {t_max!r}")
        h = self.config.hidden_size
        with torch.no_grad():
            for k in range(self.config.num_layers):
                b_ih = getattr(self.lstm, f"bias_ih_l{k}")
                b_hh = getattr(self.lstm, f"bias_hh_l{k}")
                u = torch.rand(h, generator=generator, dtype=torch.float64) * (t_max - 2) + 1
                forget = torch.log(u).to(b_ih.dtype)
                b_ih[h : 2 * h] = forget.to(b_ih.device)
                b_ih[0:h] = -forget.to(b_ih.device)
                b_hh[0 : 2 * h] = 0.0

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """A zero state for ``batch_size`` rows: ``(h, c)``, and ``s`` (no condition read) with slots."""
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        dev = device if device is not None else self.embed.weight.device
        state: State = (torch.zeros(shape, device=dev), torch.zeros(shape, device=dev))
        if self.cond_embed is not None:
            state += (torch.zeros((1, batch_size, len(self.config.condition_slots)), device=dev),)
        return state

    def fresh_state(self, batch_size: int, context: torch.Tensor | None = None) -> State | None:
        """A zero state for ``batch_size`` rows that still knows the conditions ``context`` (T,) (a piece's
        tokens so far) set: what a history cut mid-piece keeps, since a piece's conditions are not its
        history. ``None`` (the same as a zero state) for a model without condition slots."""
        if self.cond_embed is None:
            return None
        state = self.init_state(batch_size)
        if context is not None and len(context):
            _, s = self._condition_values(context.view(1, -1).to(self.embed.weight.device), None)
            state = state[:2] + (s.expand(-1, batch_size, -1).contiguous(),)
        return state

    def _condition_values(
        self, tokens: torch.Tensor, carried: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens`` (B, T) -> each position's slot values (B, T, K) long (value + 1 of the slot's latest
        condition token up to and including it; ``carried`` (1, B, K) before any) and the last ones
        (1, B, K) float, to carry."""
        rel = tokens.unsqueeze(-1) - self.slot_first  # (B, T, 1) - (K,) -> (B, T, K)
        hit = (rel >= 0) & (rel < self.slot_size)
        pos = torch.arange(tokens.shape[1], device=tokens.device).view(1, -1, 1)
        last = torch.where(hit, pos, -1).cummax(dim=1).values  # (B, T, K): latest hit so far, -1 if none
        got = torch.where(hit, rel + 1, 0).gather(1, last.clamp(min=0))
        # before any hit: the carried values, (1, B, K) -> (B, 1, K)
        before = torch.zeros_like(got[:, :1]) if carried is None else carried[0].round().long().unsqueeze(1)
        values = torch.where(last >= 0, got, before)  # (B, T, K)
        return values, values[:, -1].float().unsqueeze(0)

    def _add_conditions(self, x: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Input embeddings ``x`` (..., E) plus the sum of the slots' condition embeddings (``values``
        (..., K))."""
        assert self.cond_embed is not None
        rows = torch.where(values > 0, values + self.slot_offset, 0)  # (..., K) rows of cond_embed
        return x + self.cond_embed(rows).sum(dim=-2)  # (..., K, E) -> (..., E)

    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """``tokens`` (batch, time) int ids -> ``logits`` (batch, time, vocab) and the new ``(h, c)``."""
        out, state = self.hidden(tokens, state)
        return self.project(self.drop(out)), state

    def hidden(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """``tokens`` (batch, time) -> the top layer's outputs (batch, time, hidden) and the new state.

        ``project`` turns the outputs into logits; the neural cache (composer/cache.py) keys on them."""
        x = self.embed(tokens)  # (B, T) -> (B, T, E)
        lstm_state = None
        if state is not None:
            # Autocast may hand back a half-precision state; the LSTM wants it in the input's dtype.
            lstm_state = (state[0].to(x.dtype), state[1].to(x.dtype))
        if self.cond_embed is None:
            out, (h, c) = self.lstm(x, lstm_state)  # out: (B, T, H); h, c: (L, B, H)
            return out, (h, c)
        values, s = self._condition_values(tokens, state[2] if state is not None else None)
        out, (h, c) = self.lstm(self._add_conditions(x, values), lstm_state)
        return out, (h, c, s)

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One time step for inference: ``tokens`` (batch,) -> logits (batch, vocab) and the new state."""
        out, state = self.step_hidden(tokens, state)
        return self.project(out), state

    def step_hidden(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One time step for inference: ``tokens`` (batch,) -> top-layer output (batch, hidden), new state.

        The same arithmetic as ``hidden`` on one token (dropout is off in eval mode), run as one
        ``torch.lstm_cell`` per layer on the LSTM's own weights: on the CPU a one-step ``nn.LSTM`` call
        costs milliseconds of set-up (oneDNN), far more than the step itself.
        """
        h, c = state[0], state[1]  # (L, B, H) each
        x = self.embed(tokens)  # (B,) -> (B, E)
        extra: State = ()
        if self.cond_embed is not None:
            rel = tokens.unsqueeze(-1) - self.slot_first  # (B, K)
            hit = (rel >= 0) & (rel < self.slot_size)
            values = torch.where(hit, rel + 1, state[2][0].round().long())  # (B, K)
            x = self._add_conditions(x, values)
            extra = (values.float().unsqueeze(0),)  # (1, B, K)
        hs, cs = [], []
        for k in range(self.config.num_layers):
            weights = [
                getattr(self.lstm, f"{w}_l{k}") for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            x, ck = torch.lstm_cell(x, (h[k], c[k]), *weights)  # (B, H) each
            hs.append(x)
            cs.append(ck)
        return x, (torch.stack(hs), torch.stack(cs)) + extra  # (B, H); (L, B, H) each

    def project(self, out: torch.Tensor) -> torch.Tensor:
        """Hidden states (..., H) -> logits (..., V)."""
        if self.head is None:  # tied: the embedding matrix (V, E == H) doubles as the output projection
            return F.linear(out, self.embed.weight, self.head_bias)
        return self.head(out)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def detach_state(state: State) -> State:
    """Cut the autograd graph between windows (truncated BPTT) while keeping the values.

    The carried state is kept in float32 even when autocast computed it in half precision."""
    return tuple(t.detach().float() for t in state)


def reset_rows(state: State, keep: torch.Tensor) -> State:
    """Zero the rows of ``state`` where ``keep`` (shape (batch,), bool or 0/1) is false."""
    k = keep.to(state[0].dtype).view(1, -1, 1)  # (B,) -> (1, B, 1), broadcast over layers and units
    return tuple(t * k.to(t.dtype) for t in state)


def expand_state(state: State, batch: int) -> State:
    """A one-row ``state`` repeated ``batch`` times (each tensor (*, 1, *) -> (*, batch, *))."""
    return tuple(t.expand(-1, batch, -1).contiguous() for t in state)


def cell_excess(c: torch.Tensor, limit: float) -> torch.Tensor:
    """Mean squared excess of cell values beyond ``+-limit`` (0 when every cell is inside): the training
    loss adds it, weighted, so that cells stay bounded over pieces of any length."""
    return F.relu(c.float().abs() - limit).pow(2).mean()
