"""A training run's settings: ``TrainConfig`` (stored in every checkpoint) and the ``AugmentConfig`` in it.

Both are frozen and validated on construction; ``from_dict`` refuses unknown keys. The CLI derives its
``train`` options and their defaults from ``TrainConfig``'s fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from composer.configs import check_range, known_fields
from composer.errors import ConfigError
from composer.model import PRESETS, ModelConfig

#: Peak learning rate per preset (the large preset uses Performance RNN's).
PRESET_LR = {"small": 5e-3, "medium": 3e-3, "large": 1e-3}


@dataclass(frozen=True)
class AugmentConfig:
    """On-the-fly augmentation, drawn per piece when a batch row starts it (``composer.batching``)."""

    transpose: int = 0  # up to this many semitones either way, kept inside the piece's pitch range
    velocity_jitter: int = 0  # shift all velocities by up to this many bins either way (README: off)
    time_stretch: float = 0.05  # encodings with a time-stretch table: stretch by up to this fraction
    time_stretch_steps: int = 5  # distinct stretch factors in [1 - time_stretch, 1 + time_stretch]

    def __post_init__(self) -> None:
        check_range("transpose", self.transpose, 0, 127)
        check_range("velocity_jitter", self.velocity_jitter, 0, 127)
        check_range("time_stretch", self.time_stretch, 0.0, 0.5, (int, float))
        check_range("time_stretch_steps", self.time_stretch_steps, 1, 101)


#: ``TrainConfig`` fields that decide each row's augmentation draw; a resume that changes them restarts
#: the data order.
AUGMENTATION_FIELDS = tuple(f.name for f in fields(AugmentConfig))


@dataclass(frozen=True)
class TrainConfig:
    """Every hyper-parameter of a training run. Stored in each checkpoint; validated on construction."""

    # --- model: a preset, optionally overridden field by field (None keeps the preset's value)
    preset: str = "small"
    embed_dim: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    dropout: float | None = None
    tie_weights: bool | None = None
    # --- data (the defaults suit a CPU; on a GPU raise both)
    batch_size: int = 16  # rows streamed in parallel (per process)
    window: int = 64  # tokens per truncated-BPTT window
    # --- optimisation (AdamW, linear warm-up then cosine decay to min_lr)
    lr: float | None = None  # peak learning rate; None = the preset's (PRESET_LR)
    min_lr: float | None = None  # where the cosine ends; None = lr / 10
    warmup_steps: int = 100
    lr_decay_steps: int | None = None  # where the cosine reaches min_lr; None = max_steps
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 = off
    grad_accum: int = 1  # windows per optimizer step
    # a penalty on carried cell values beyond +-cell_limit (each window's last state): without it cells
    # drift into ever larger counters over long pieces and the carried state hurts instead of helping
    cell_penalty: float = 1e-3  # 0 = off
    cell_limit: float = 5.0
    # chrono initialisation of the gate biases for time scales up to this many tokens (Tallec & Ollivier
    # 2018; composer.model.LSTMModel.chrono_init); None = twice the window, 0 = off (a forget-gate bias
    # of 1). README's long-range benchmark says why it is on by default.
    chrono_init: int | None = None
    fit_cache: bool = True  # fit the neural cache (composer/cache.py) on the validation split at the end
    # --- conditions (composer/conditions.py): what generation can steer by. ``auto``: every attribute
    # (key, density, tempo) and label column the corpus has; ``none``; or a comma list of key, density,
    # tempo, labels, label:COLUMN. Each is dropped to NONE at random with ``condition_dropout``, so that a
    # song asked for nothing is one the model learnt too.
    conditions: str = "auto"
    condition_dropout: float = 0.5
    # --- stopping
    max_steps: int = 6000
    max_minutes: float | None = None  # wall-clock budget of one invocation
    eval_every: int = 500
    eval_batches: int = 50  # validation windows per evaluation (per process), always the same; 0 = all
    patience: int = 0  # evaluations without improvement before stopping; 0 = never stop early
    music_samples: int = 0  # songs sampled at each evaluation for the music statistics; 0 = off
    max_bad_steps: int = 10  # consecutive non-finite losses before giving up
    # --- runtime
    seed: int = 1337
    device: str = "auto"
    amp: bool = True  # mixed precision on CUDA: float16 autocast + loss scaling
    num_threads: int = 0  # CPU threads for torch; 0 = one per four cores (device.auto_threads)
    # --- augmentation (``augment``), drawn per piece; transposition is off by default (README: it costs
    # likelihood on short runs)
    transpose: int = 0
    velocity_jitter: int = 0
    time_stretch: float = 0.05
    time_stretch_steps: int = 5

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ConfigError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        check_range("batch_size", self.batch_size, 1, 65536)
        check_range("window", self.window, 1, 1 << 20)
        for name in ("lr", "min_lr"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), 0.0, 10.0, (int, float))
        if self.final_lr > self.peak_lr:
            raise ConfigError(f"min_lr must be in 0..lr ({self.peak_lr}), got {self.min_lr!r}")
        check_range("warmup_steps", self.warmup_steps, 0, 1 << 40)
        if self.lr_decay_steps is not None:
            check_range("lr_decay_steps", self.lr_decay_steps, 1, 1 << 40)
            if self.lr_decay_steps < self.warmup_steps:
                raise ConfigError(
                    f"lr_decay_steps must be at least warmup_steps ({self.warmup_steps}), "
                    f"got {self.lr_decay_steps}"
                )
        check_range("weight_decay", self.weight_decay, 0.0, 10.0, (int, float))
        check_range("beta1", self.beta1, 0.0, 0.999999, (int, float))
        check_range("beta2", self.beta2, 0.0, 0.999999, (int, float))
        check_range("grad_clip", self.grad_clip, 0.0, 1e6, (int, float))
        check_range("grad_accum", self.grad_accum, 1, 4096)
        check_range("cell_penalty", self.cell_penalty, 0.0, 1e3, (int, float))
        check_range("cell_limit", self.cell_limit, 0.0, 1e6, (int, float))
        if self.chrono_init is not None:
            check_range("chrono_init", self.chrono_init, 0, 1 << 24)
            if 0 < self.chrono_init < 3:
                raise ConfigError(f"chrono_init must be 0 (off) or at least 3 tokens, got {self.chrono_init}")
        from composer.conditions import parse_condition_names

        if not isinstance(self.conditions, str):
            raise ConfigError(f"conditions must be a string, got {self.conditions!r}")
        parse_condition_names(self.conditions)
        check_range("condition_dropout", self.condition_dropout, 0.0, 1.0, (int, float))
        if not isinstance(self.fit_cache, bool):
            raise ConfigError(f"fit_cache must be true or false, got {self.fit_cache!r}")
        check_range("max_steps", self.max_steps, 1, 1 << 40)
        if self.max_minutes is not None:
            check_range("max_minutes", self.max_minutes, 0.0, 1e7, (int, float))
        check_range("eval_every", self.eval_every, 1, 1 << 40)
        check_range("eval_batches", self.eval_batches, 0, 1 << 40)
        check_range("patience", self.patience, 0, 1 << 20)
        check_range("music_samples", self.music_samples, 0, 256)
        check_range("max_bad_steps", self.max_bad_steps, 1, 1 << 20)
        check_range("seed", self.seed, 0, 2**63 - 1)
        if self.device.split(":", 1)[0] not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"device must be one of auto, cpu, cuda, mps, got {self.device!r}")
        if not isinstance(self.amp, bool):
            raise ConfigError(f"amp must be true or false, got {self.amp!r}")
        check_range("num_threads", self.num_threads, 0, 1024)
        _ = self.augment  # validates the augmentation fields
        self.model_config(vocab_size=16)  # validates the architecture overrides early

    @property
    def augment(self) -> AugmentConfig:
        return AugmentConfig(**{name: getattr(self, name) for name in AUGMENTATION_FIELDS})

    @property
    def peak_lr(self) -> float:
        return float(self.lr if self.lr is not None else PRESET_LR[self.preset])

    @property
    def chrono_tokens(self) -> int:
        """The chrono initialisation's longest time scale in tokens; 0: off."""
        if self.chrono_init is not None:
            return self.chrono_init
        return 2 * self.window if 2 * self.window >= 3 else 0

    @property
    def final_lr(self) -> float:
        return float(self.min_lr if self.min_lr is not None else self.peak_lr / 10)

    def model_config(self, vocab_size: int, condition_slots: tuple[tuple[int, int], ...] = ()) -> ModelConfig:
        """The architecture for a vocabulary of ``vocab_size`` whose condition tokens sit in
        ``condition_slots`` (the tokenizer's; fed to the LSTM at every step)."""
        return ModelConfig.from_preset(
            self.preset,
            vocab_size,
            condition_slots=condition_slots or None,
            embed_dim=self.embed_dim,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            tie_weights=self.tie_weights,
        )

    def replace(self, **changes: Any) -> TrainConfig:
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        if isinstance(data, dict) and "conditions" not in data:
            data = {**data, "conditions": "none"}  # stored before conditions existed: a run without them
        return cls(**known_fields(cls, data, "train"))
