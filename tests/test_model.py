"""The LSTM model: config validation, one forward path, carried state."""

from __future__ import annotations

import pytest
import torch

from composer.errors import ConfigError
from composer.model import PRESETS, LSTMModel, ModelConfig, detach_state, reset_rows

torch.set_num_threads(1)


def small(**kw: object) -> ModelConfig:
    base: dict[str, object] = {
        "vocab_size": 50,
        "embed_dim": 16,
        "hidden_size": 16,
        "num_layers": 2,
        "dropout": 0.0,
    }
    base.update(kw)
    return ModelConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hidden_size", 0, "hidden_size must be an integer in 1..65536, got 0"),
        ("embed_dim", -3, "embed_dim must be an integer in 1..65536, got -3"),
        ("num_layers", 0, "num_layers must be an integer in 1..64, got 0"),
        ("vocab_size", 2, "vocab_size must be an integer in 4..1048576, got 2"),
        ("dropout", 1.5, "dropout must be a number in 0.0..0.95, got 1.5"),
        ("hidden_size", 3.5, "hidden_size must be an integer in 1..65536, got 3.5"),
        ("num_layers", True, "num_layers must be an integer in 1..64, got True"),
    ],
)
def test_config_errors_name_value_and_range(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        small(**{field: value, "tie_weights": False})
    assert str(e.value) == message


def test_tying_needs_equal_widths() -> None:
    with pytest.raises(ConfigError, match="tie_weights needs embed_dim == hidden_size"):
        ModelConfig(vocab_size=10, embed_dim=8, hidden_size=16, tie_weights=True)
    assert ModelConfig(vocab_size=10, embed_dim=8, hidden_size=16, tie_weights=False).hidden_size == 16


def test_config_dict_round_trip_and_unknown_keys() -> None:
    cfg = small(tie_weights=True)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown model config key.*: bogus"):
        ModelConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ConfigError, match="vocab_size"):
        ModelConfig.from_dict({"hidden_size": 8})
    with pytest.raises(AttributeError):
        cfg.hidden_size = 3  # type: ignore[misc]  # frozen


def test_presets() -> None:
    assert set(PRESETS) == {"small", "medium", "large"}
    large = ModelConfig.from_preset("large", 300)
    assert (large.num_layers, large.hidden_size) == (3, 512)
    sizes = [
        LSTMModel(ModelConfig.from_preset(p, 300)).num_parameters() for p in ("small", "medium", "large")
    ]
    assert sizes == sorted(sizes)
    # an override replaces one field; a width override unties a tied preset instead of failing
    custom = ModelConfig.from_preset("small", 300, hidden_size=64)
    assert custom.hidden_size == 64 and not custom.tie_weights
    with pytest.raises(ConfigError, match="preset must be one of small, medium, large, got 'huge'"):
        ModelConfig.from_preset("huge", 300)


@pytest.mark.parametrize("tie", [True, False])
def test_forward_shapes_and_tied_head(tie: bool) -> None:
    torch.manual_seed(0)
    model = LSTMModel(small(tie_weights=tie))
    tokens = torch.randint(0, 50, (3, 7))
    logits, (h, c) = model(tokens)
    assert logits.shape == (3, 7, 50)
    assert h.shape == c.shape == (2, 3, 16)
    keys = set(model.state_dict())
    assert ("head.weight" in keys) is not tie  # tied: the head *is* the embedding, stored once
    logits.sum().backward()
    assert model.embed.weight.grad is not None and model.embed.weight.grad.abs().sum() > 0


def test_state_carries_across_windows() -> None:
    """Forward over a whole sequence == forward over its windows, state passed on (TBPTT's premise)."""
    torch.manual_seed(1)
    model = LSTMModel(small()).eval()
    tokens = torch.randint(0, 50, (2, 24))
    full, full_state = model(tokens)
    state = None
    parts = []
    for start in range(0, 24, 5):
        out, state = model(tokens[:, start : start + 5], state)
        state = detach_state(state)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state[0], full_state[0], rtol=1e-5, atol=1e-5)
    # one token at a time (generation) goes through the same forward
    state = None
    steps = []
    for t in range(24):
        out, state = model(tokens[:, t : t + 1], state)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_state_matters_and_reset_rows_forgets() -> None:
    torch.manual_seed(2)
    model = LSTMModel(small()).eval()
    prefix = torch.randint(0, 50, (2, 10))
    nxt = torch.randint(0, 50, (2, 4))
    _, state = model(prefix)
    carried, _ = model(nxt, state)
    fresh, _ = model(nxt)
    assert not torch.allclose(carried, fresh, atol=1e-4)  # the state carries information
    keep = torch.tensor([True, False])
    reset = reset_rows(state, keep)
    torch.testing.assert_close(reset[0][:, 0], state[0][:, 0])
    assert reset[0][:, 1].abs().sum() == 0 and reset[1][:, 1].abs().sum() == 0
    mixed, _ = model(nxt, reset)
    torch.testing.assert_close(mixed[1], fresh[1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mixed[0], carried[0], rtol=1e-5, atol=1e-6)


def test_init_state_and_detach() -> None:
    model = LSTMModel(small())
    h, c = model.init_state(5)
    assert h.shape == (2, 5, 16) and not h.any() and not c.any()
    x = torch.randint(0, 50, (5, 3))
    _, st = model(x, (h, c))
    d = detach_state(st)
    assert st[0].requires_grad and not d[0].requires_grad and d[0].dtype == torch.float32


def test_chrono_init_spreads_the_time_scales() -> None:
    """Forget biases log(U(1, T - 1)), input biases their negation, the hidden-side gate biases zero."""
    m = LSTMModel(small(hidden_size=64, embed_dim=64))
    m.chrono_init(500, generator=torch.Generator().manual_seed(0))
    h = 64
    for k in range(2):
        b_ih = getattr(m.lstm, f"bias_ih_l{k}").detach()
        b_hh = getattr(m.lstm, f"bias_hh_l{k}").detach()
        forget = b_ih[h : 2 * h]
        assert float(forget.min()) >= 0.0 and float(forget.max()) <= torch.log(torch.tensor(499.0)) + 1e-6
        assert float(forget.max()) > 4.0  # some cells remember for 50+ tokens (log 50 = 3.9)
        torch.testing.assert_close(b_ih[:h], -forget)
        assert float(b_hh[: 2 * h].abs().max()) == 0.0
    with pytest.raises(ConfigError, match="at least 3 tokens"):
        m.chrono_init(2)


# -------------------------------------------------------------------- conditions at every step
SLOTS = ((40, 4), (44, 3))  # two conditions: ids 40..43 and 44..46 (vocabulary of 50)


def conditioned(**kw: object) -> LSTMModel:
    return LSTMModel(small(condition_slots=SLOTS, **kw)).eval()


def test_condition_slots_are_validated_and_round_trip() -> None:
    cfg = small(condition_slots=SLOTS)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    as_json = {**cfg.to_dict(), "condition_slots": [[40, 4], [44, 3]]}
    assert ModelConfig.from_dict(as_json) == cfg
    assert small().condition_slots == ()
    for bad in ([[40, 0]], [[48, 4]], [[44, 3], [40, 4]], [[40, 4], [42, 2]], [[40]], "40", [[40, 2.0]]):
        with pytest.raises(ConfigError, match="condition_slots"):
            small(condition_slots=bad)


def test_conditions_reach_every_step_and_forward_equals_steps_and_windows() -> None:
    torch.manual_seed(3)
    model = conditioned()
    music = torch.randint(4, 40, (1, 30))
    a = torch.cat([torch.tensor([[1, 41, 45]]), music], dim=1)  # BOS, slot values 1 and 1
    b = torch.cat([torch.tensor([[1, 43, 46]]), music], dim=1)
    la, sa = model(a)
    lb, _ = model(b)
    # the conditions differ only at the start, yet every later prediction differs by a similar amount
    late = (la[0, -5:] - lb[0, -5:]).abs().mean()
    assert late > 0.5 * (la[0, 3:8] - lb[0, 3:8]).abs().mean() and late > 1e-3
    assert sa[2].tolist() == [[[2.0, 2.0]]]  # the latest value + 1 of each slot
    # without conditions read the model is the plain one plus nothing: row 0 of the table is zero
    assert model.cond_embed is not None and not model.cond_embed.weight[0].any()
    # windows with the state carried, and one token at a time, equal the whole sequence
    state = None
    parts = []
    for start in range(0, a.shape[1], 4):
        out, state = model(a[:, start : start + 4], state)
        parts.append(out)
    torch.testing.assert_close(torch.cat(parts, dim=1), la, rtol=1e-5, atol=1e-5)
    state = model.init_state(1)
    steps = []
    for t in range(a.shape[1]):
        logits, state = model.step(a[:, t], state)
        steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, dim=1), la, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state[2], sa[2])


def test_a_new_piece_in_the_window_takes_its_own_conditions_and_reset_forgets_them() -> None:
    torch.manual_seed(4)
    model = conditioned()
    one = torch.tensor([[1, 40, 44, 5, 6, 7, 2]])
    two = torch.tensor([[1, 42, 45, 8, 9, 10]])
    packed, _ = model(torch.cat([one, two], dim=1))
    alone, _ = model(two)
    # the LSTM cells carry over from the first piece, the conditions do not: slot values are the second's
    _, state = model(torch.cat([one, two], dim=1))
    assert state[2].tolist() == [[[3.0, 2.0]]]
    assert not torch.allclose(packed[0, 7:], alone[0])  # the cells still remember the first piece
    reset = reset_rows(state, torch.tensor([False]))
    assert all(not t.any() for t in reset) and len(reset) == 3
    assert detach_state(state)[2].dtype == torch.float32


def test_fresh_state_keeps_the_pieces_conditions() -> None:
    torch.manual_seed(5)
    model = conditioned()
    piece = torch.tensor([1, 43, 44, 5, 6, 7, 8, 9, 10, 11])
    state = model.fresh_state(3, piece[:6])
    assert state is not None and state[2].tolist() == [[[4.0, 1.0]] * 3]
    assert not state[0].any() and not state[1].any()
    window = piece[6:].repeat(3, 1)
    kept, _ = model(window, state)
    bare, _ = model(window)
    assert not torch.allclose(kept, bare)
    assert LSTMModel(small()).fresh_state(2, piece) is None  # an unconditioned model: a zero state
