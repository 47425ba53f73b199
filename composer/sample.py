"""Generation: sample new pieces from a trained checkpoint, valid by construction.

The ``n`` songs are sampled as one batch. The LSTM state is carried token by token (feed one token, get
the logits, sample, feed the sample), so every token costs the same however long the song already is;
nothing is ever re-run over a window. At each step the tokenizer's grammar says which tokens may come
next; the others get a logit of -inf *before* temperature, top-k and top-p, so every sampled sequence is
one the encoder itself could have written: every note is closed and the piece decodes to valid music.

Length: ``Length(seconds=...)``, ``Length(bars=...)`` or ``Length(tokens=...)`` of music after the primer
(if any). When a row reaches it the grammar is asked to end the piece cleanly (the beat grammar finishes
the bar it is in and stops on the bar line, the performance grammar releases the notes still sounding).
A hard token cap keeps a model that never gets there from running forever; past it the piece is closed
deterministically with the fewest tokens the grammar allows, and the song is marked ``cut``.

Neural cache (``composer.cache``, ``cache=``): the model's next-token distribution is mixed with a vote of
the piece's own past (what followed the earlier positions whose hidden state looked like this one), so a
theme heard long ago can come back verbatim. The mixture's log-probabilities take the logits' place
before the grammar mask, temperature, top-k and top-p; each row keeps its own cache, the primer's positions
pushed first, then every sampled token with the hidden state that predicted it. Without it the loop is
the plain one, token for token.

Sampling runs on the CPU with a seeded ``torch.Generator`` (the model itself may run on ``device``), so
the same checkpoint, options and seed give byte-identical files on a given machine. The songs' files:
``composer.songs``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from composer.attributes import (
    LEVELS,
    estimate_key,
    key_shift,
    level_of,
    median_tempo,
    note_density,
    parse_key,
)
from composer.cache import CacheBank, CacheConfig
from composer.errors import ConfigError
from composer.model import LSTMModel, State, expand_state
from composer.songs import GeneratedSong, check_primer_programs, encode_primer, songs_from_sample

if TYPE_CHECKING:  # pragma: no cover
    from composer.attributes import Key
    from composer.checkpoint import Checkpoint
    from composer.midi import Score
    from composer.tokenizer import Grammar, GrammarState, TempoSteering, Tokenizer
    from composer.tokenizer.grammar import Constraint

#: The model the quick start trains (``make demo``); ``composer generate`` uses it when given none.
DEFAULT_CHECKPOINT = Path("checkpoints/bach")
#: Length when none is asked for.
DEFAULT_SECONDS = 30.0
#: The longest song one may ask for, in each unit.
MAX_SONG_SECONDS = 3600.0
MAX_SONG_BARS = 2000
MAX_SONG_TOKENS = 500_000
#: Token budget per unit of length before the hard cap stops a row (generous: dense multitrack music
#: runs to a few hundred tokens per second, a few hundred per bar).
CAP_TOKENS_PER_SECOND = 600
CAP_TOKENS_PER_BAR = 1500
CAP_MIN_TOKENS = 1024
#: Tokens a row may still sample after the end was requested before it is closed deterministically.
CLOSE_BUDGET = 512
#: Tempo range ``--bpm`` accepts.
MIN_BPM, MAX_BPM = 20.0, 400.0
#: Songs one call may generate.
MAX_SONGS = 4096
#: Notes of one program and pitch that a sampled song may start together (Grammar.limit_unisons): real
#: music doubles a note two or three times; without a limit, a song copying its own past through the
#: cache can stack one note dozens of times.
MAX_UNISON = 3
#: Empty bars in a row a sampled song may have (Grammar.limit_empty_bars): in the Bach chorales, the
#: Nottingham tunes, VGMIDI and the Debian game music, 3 or more occur in fewer than 1% of the pieces.
MAX_EMPTY_BARS = 2
#: How often (in steps) the progress callback is called.
PROGRESS_EVERY = 16
#: The most memory the neural cache's keys may take for one batch (songs x cache size x hidden units).
MAX_CACHE_BYTES = 4 << 30
#: With ``lam = 1`` (the cache alone), tokens the cache never saw keep the model's log-probability plus
#: this, so that a row whose grammar allows only unseen tokens can still sample.
CACHE_ONLY_FLOOR = -1000.0

ProgressFn = Callable[[float, float], None]


# ------------------------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class Length:
    """How much music to generate after the primer: exactly one of seconds, bars or tokens."""

    seconds: float | None = None
    bars: int | None = None
    tokens: int | None = None
    #: Tokens a row may sample before it is made to end, where the estimate from the length is not enough.
    cap: int | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("seconds", "bars", "tokens") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ConfigError(f"give one length, not {' and '.join('--' + k for k in given)}")
        if not given:
            object.__setattr__(self, "seconds", DEFAULT_SECONDS)
        if self.seconds is not None:
            s = float(self.seconds)
            if not math.isfinite(s) or s <= 0 or s > MAX_SONG_SECONDS:
                raise ConfigError(
                    f"--seconds must be > 0 and at most {MAX_SONG_SECONDS:g}, got {self.seconds:g}"
                )
            object.__setattr__(self, "seconds", s)
        if self.bars is not None and not 1 <= self.bars <= MAX_SONG_BARS:
            raise ConfigError(f"--bars must be in 1..{MAX_SONG_BARS}, got {self.bars}")
        if self.tokens is not None and not 1 <= self.tokens <= MAX_SONG_TOKENS:
            raise ConfigError(f"--tokens must be in 1..{MAX_SONG_TOKENS}, got {self.tokens}")

    @property
    def unit(self) -> str:
        return "s" if self.seconds is not None else "bar" if self.bars is not None else "token"

    @property
    def amount(self) -> float:
        return float(self.seconds if self.seconds is not None else self.bars or self.tokens or 0)

    def to_dict(self) -> dict[str, float | int]:
        return {k: v for k in ("seconds", "bars", "tokens") if (v := getattr(self, k)) is not None}

    def token_cap(self) -> int:
        """Tokens a row may sample (after the primer) before it is made to end."""
        if self.cap is not None:
            return self.cap
        if self.tokens is not None:
            return self.tokens
        est = self.amount * (CAP_TOKENS_PER_SECOND if self.seconds is not None else CAP_TOKENS_PER_BAR)
        return int(min(MAX_SONG_TOKENS, max(CAP_MIN_TOKENS, math.ceil(est))))


def check_sampling_options(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not (isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"--temperature must be > 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")
    if top_p is not None and not (math.isfinite(top_p) and 0 < top_p <= 1):
        raise ConfigError(f"--top-p must be in (0, 1], got {top_p}")


def check_bpm(bpm: float | None) -> None:
    if bpm is not None and not (math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
        raise ConfigError(f"--bpm must be in {MIN_BPM:g}..{MAX_BPM:g}, got {bpm:g}")


# ------------------------------------------------------------------------------------------------ sampling


@dataclass
class SampleOutput:
    """Raw sampling result for a batch."""

    ids: list[np.ndarray]  # per row: BOS ... EOS (uint16), primer included
    primer_tokens: int  # tokens of the primer (BOS included) at the start of each row
    hit_cap: np.ndarray  # bool (batch,): the row reached the hard token cap before its length
    forced: np.ndarray  # bool (batch,): the row did not end by itself and was closed deterministically
    steps: int  # sampling steps run (the longest row's continuation)
    bars: np.ndarray  # int (batch,) bars started (0 in an encoding without bars), from the grammar
    seconds: np.ndarray  # float (batch,) music time per the grammar (model tempo)
    token_cap: int  # the hard cap on tokens per row (after the primer)
    close_budget: int  # tokens a row had, after its end was requested, before it was closed by force
    cache: CacheConfig | None = None  # the neural cache sampling used, None without one

    @property
    def cut(self) -> np.ndarray:
        """bool (batch,): a limit stopped the row (the token cap, or closed by force)."""
        return self.hit_cap | self.forced


class _Filter:
    """Temperature, top-k and top-p on (batch, vocab) float logits whose disallowed entries are -inf."""

    def __init__(self, temperature: float, top_k: int | None, top_p: float | None, vocab: int) -> None:
        self.inv_t = None if temperature == 1.0 else 1.0 / temperature
        self.top_k = None if top_k is None or top_k >= vocab else int(top_k)
        self.top_p = None if top_p is None or top_p >= 1.0 else float(top_p)

    def __call__(self, lg: torch.Tensor) -> torch.Tensor:
        if self.inv_t is not None:
            lg = lg * self.inv_t
        if self.top_k is not None:
            kth = torch.topk(lg, self.top_k, dim=-1).values[:, -1:]
            lg = lg.masked_fill(lg < kth, -math.inf)
        if self.top_p is not None:
            srt, idx = torch.sort(lg, dim=-1, descending=True, stable=True)
            probs = torch.softmax(srt, dim=-1)
            # drop a token when the tokens ranked above it already hold top_p (the best always stays)
            drop = (torch.cumsum(probs, dim=-1) - probs) >= self.top_p
            srt = srt.masked_fill(drop, -math.inf)
            lg = torch.empty_like(lg).scatter_(1, idx, srt)
        return lg


class Stepper:
    """Feed one token per row, get the next-token logits; the LSTM state is carried between calls.

    Uses ``model.step`` (one ``torch.lstm_cell`` per layer, see ``LSTMModel.step``) where the model has
    it; any other model is called as ``model(tokens (B, 1), state) -> (logits (B, 1, V), state)``.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self._step = model.step if isinstance(model, LSTMModel) else None

    @property
    def fast(self) -> bool:
        """Whether the model's own one-token step is used."""
        return self._step is not None

    def prime(self, tokens: torch.Tensor, batch: int) -> tuple[torch.Tensor, State]:
        """Run ``tokens`` (T,) once; return the last logits and the state, both repeated ``batch`` times."""
        logits, state = self.model(tokens.unsqueeze(0), None)
        last = logits[0, -1].float().unsqueeze(0).expand(batch, -1)
        return last, expand_state(state, batch)

    def __call__(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """``tokens`` (B,) long -> logits (B, V) and the new state."""
        if self._step is not None:
            return self._step(tokens, state)
        logits, state = self.model(tokens.unsqueeze(1), state)
        return logits[:, -1], state


class CachedStepper:
    """``Stepper`` with a neural cache: returns the log-probabilities of the mixture instead of logits.

    ``push(tokens)`` records the tokens just sampled with the hidden state that predicted them, one cache
    per row (``CacheBank``). Needs an ``LSTMModel`` (its ``hidden``, ``step_hidden`` and ``project``).
    """

    def __init__(self, model: LSTMModel, config: CacheConfig, batch: int, device: torch.device) -> None:
        self.model = model
        hidden_size = model.config.hidden_size
        need = batch * config.size * hidden_size * 4
        if need > MAX_CACHE_BYTES:
            raise ConfigError(
                f"the neural cache for {batch} songs needs {need / (1 << 30):.1f} GiB "
                f"(cache size {config.size}); generate fewer songs at once or without the cache"
            )
        self.bank = CacheBank(config, batch, hidden_size, model.config.vocab_size, device)
        self._floor = math.log1p(-config.lam) if config.lam < 1.0 else CACHE_ONLY_FLOOR
        self._hidden: torch.Tensor | None = None

    def _mix(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.model.project(hidden)
        mixed = self.bank.mix_logits(logits, hidden)
        if not self.bank.config.enabled:
            return mixed
        # the mixture is at least (1 - lam) p_model: keeps a token the float32 sum rounded to 0 sampleable
        floor = torch.log_softmax(logits.float(), dim=-1) + self._floor
        return torch.maximum(mixed, floor)

    def prime(self, tokens: torch.Tensor, batch: int) -> tuple[torch.Tensor, State]:
        """Run ``tokens`` (T,) once, push its positions into every row's cache; the mixture's log-probs
        for the next token and the state, repeated ``batch`` times."""
        out, state = self.model.hidden(tokens.unsqueeze(0), None)
        out = out[0]  # (T, H)
        self.bank.push_sequence(out[:-1], tokens[1:])
        self._hidden = out[-1:].expand(batch, -1)
        last = self._mix(self._hidden)
        return last, expand_state(state, batch)

    def push(self, tokens: torch.Tensor) -> None:
        """Record ``tokens`` (B,), just sampled, with the hidden state that predicted them."""
        assert self._hidden is not None, "prime first"
        self.bank.push(self._hidden, tokens)

    def __call__(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """``tokens`` (B,) long -> the mixture's log-probabilities (B, V) and the new state."""
        self._hidden, state = self.model.step_hidden(tokens, state)
        return self._mix(self._hidden), state


def sample_ids(
    model: torch.nn.Module,
    tok: Tokenizer,
    n: int,
    length: Length,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    primer_ids: np.ndarray | None = None,
    tempo: TempoSteering | None = None,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
    grammar: Grammar[Any] | None = None,
    close_budget: int = CLOSE_BUDGET,
    num_threads: int | None = 1,
    cache: CacheConfig | None = None,
    conditions: Mapping[str, str | None] | None = None,
    programs: set[int] | None = None,
    constraint: Constraint | None = None,
) -> SampleOutput:
    """Sample ``n`` token sequences in one batch, carrying the LSTM state token by token.

    ``primer_ids`` (BOS ..., no EOS) is run through the model once and through the grammar leniently;
    sampling continues from there. ``tempo`` (``Tokenizer.tempo_steering``) limits the tokens where the
    grammar leaves a choice and scales the seconds target (the grammar counts time at the model's tempo).
    ``close_budget``: tokens a row may still sample after its end was requested before it is closed
    deterministically (0 closes at once, as the benchmark does to count tokens exactly).
    ``num_threads``: torch CPU threads while sampling (restored afterwards; None leaves them as they
    are). One by default: a step is a few small matrix products, too little to share out, and a second
    thread that has to wait for a busy core makes every step many times slower.
    ``cache``: sample from the model mixed with this neural cache (``CachedStepper``; an ``LSTMModel``
    only); None samples from the model alone.
    ``conditions`` (condition name -> value, ``composer.conditions``): what a conditioned model is asked
    for; the condition tokens go after BOS (NONE for every condition not given, and for all of them
    without ``conditions``). ``programs``: the only instruments the songs may play (the grammar admits no
    other PROGRAM, and each of them plays: see ``Grammar.limit_programs``; a grammar passed in is limited
    too). ``constraint`` (e.g. the tokenizer's ``keep_parts``): tokens the songs must write, and may not.
    """
    check_sampling_options(temperature, top_k, top_p)
    if n < 1:
        raise ConfigError(f"number of songs must be at least 1, got {n}")
    device = torch.device(device)
    if conditions and tok.conditions is None:
        raise ConfigError("the model was trained without conditions; it cannot be steered by them")
    if grammar is None:
        grammar = tok.grammar()
        grammar.limit_unisons(MAX_UNISON)
        grammar.limit_empty_bars(MAX_EMPTY_BARS)
    g = grammar
    if programs is not None:
        g.limit_programs(set(programs), every=True)
    filt = _Filter(temperature, top_k, top_p, tok.vocab.size)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    prefix = np.asarray(primer_ids if primer_ids is not None else [tok.bos_id], dtype=np.int64)
    if len(prefix) == 0 or prefix[0] != tok.bos_id:
        prefix = np.concatenate([[tok.bos_id], prefix])
    if (prefix == tok.eos_id).any():
        prefix = prefix[: int(np.argmax(prefix == tok.eos_id))]
    prefix = tok.condition(tok.strip_conditions(prefix), dict(conditions or {}))
    n_cond = tok.condition_count  # after BOS: what the grammar does not read

    was_training = model.training
    model.eval()
    threads_before = torch.get_num_threads()
    if num_threads is not None and device.type == "cpu":
        torch.set_num_threads(num_threads)
    try:
        stepper: Stepper | CachedStepper = Stepper(model)
        if cache is not None:
            if not isinstance(model, LSTMModel):
                raise ConfigError(f"the neural cache needs an LSTMModel, not a {type(model).__name__}")
            stepper = CachedStepper(model, cache, n, device)
        raw = _sample_loop(
            stepper,
            g,
            n,
            length,
            filt,
            gen,
            prefix,
            n_cond,
            tempo,
            device,
            progress,
            close_budget,
            constraint,
        )
        raw.cache = cache
        return raw
    finally:
        torch.set_num_threads(threads_before)
        if was_training:
            model.train()


def _length_meter(
    length: Length, st: GrammarState[Any], seconds_scale: float
) -> tuple[float, Callable[[int], np.ndarray]]:
    """(target, progress of each row at a step) for ``length``, counted from where the primer ends."""
    if length.seconds is not None:
        base = st.seconds.copy()
        return length.seconds * seconds_scale, lambda step: st.seconds - base
    if length.bars is not None:
        base_bars = st.bars.copy()
        return float(length.bars), lambda step: (st.bars - base_bars).astype(np.float64)
    n = len(st.rows)
    return float(length.tokens or 0), lambda step: np.full(n, float(step + 1))


class _Ends:
    """Where each row is on its way to the end: asked to end, stopped by the cap, closed by force."""

    def __init__(
        self, st: GrammarState[Any], length: Length, seconds_scale: float, close_budget: int
    ) -> None:
        n = len(st.rows)
        self.target, self.measure = _length_meter(length, st, seconds_scale)
        self.cap = length.token_cap()
        self.counts_tokens = length.tokens is not None  # reaching the cap is then the length, not a cut
        self.close_budget = close_budget
        self.ending = np.zeros(n, dtype=bool)  # the end was requested
        self.hit_cap = np.zeros(n, dtype=bool)
        self.forced = np.zeros(n, dtype=bool)
        self.any_forced = False
        self.end_step = np.zeros(n, dtype=np.int64)

    def update(self, g: Grammar[Any], st: GrammarState[Any], finished: np.ndarray, step: int) -> None:
        """After ``step``: the requested length reached -> end cleanly; the hard cap -> end now; past the
        close budget -> close by force."""
        live = ~finished & ~self.ending
        if live.any():
            reached = live & (self.measure(step) >= self.target)
            if step + 1 >= self.cap:
                if not self.counts_tokens:
                    self.hit_cap |= live & ~reached
                reached = live
            if reached.any():
                g.request_end(st, reached)
                self.ending |= reached
                self.end_step[reached] = step
        over = self.ending & ~finished & ~self.forced & (step - self.end_step >= self.close_budget)
        if over.any():
            self.forced |= over
            self.any_forced = True

    def done(self, finished: np.ndarray, step: int) -> float:
        """Mean progress of the rows towards the target, for the progress callback."""
        reached = np.where(finished | self.ending, self.target, np.minimum(self.measure(step), self.target))
        return float(reached.mean())


def _sample_loop(
    stepper: Stepper | CachedStepper,
    g: Grammar[Any],
    n: int,
    length: Length,
    filt: _Filter,
    gen: torch.Generator,
    prefix: np.ndarray,
    n_cond: int,
    tempo: TempoSteering | None,
    device: torch.device,
    progress: ProgressFn | None,
    close_budget: int,
    constraint: Constraint | None = None,
) -> SampleOutput:
    eos = g.eos_id
    cost = g.close_costs()
    allowed = None if tempo is None else tempo.allowed  # a restriction on top of the grammar's
    push = stepper.push if isinstance(stepper, CachedStepper) else None
    st = g.start(n)
    if constraint is not None:
        constraint.start(n)
    with torch.inference_mode():
        last, state = stepper.prime(torch.as_tensor(prefix, dtype=torch.long, device=device), n)
        last = last.cpu()
        for t in prefix[1 + n_cond :].tolist():
            g.advance(st, np.full(n, t, dtype=np.int64), strict=False)
        ends = _Ends(st, length, 1.0 if tempo is None else tempo.seconds_scale, close_budget)
        neg_inf = torch.tensor(-math.inf)
        out: list[np.ndarray] = []
        for step in range(ends.cap + 2 * close_budget + 20_000):
            mask = _constrain(st.mask(), ends.ending, eos, allowed)
            if constraint is not None:
                mask = constraint.mask(st, mask)
            nxt_np = _draw(filt(torch.where(torch.from_numpy(mask), last, neg_inf)), gen, mask)
            if ends.any_forced:  # past the close budget: the cheapest way out, no sampling
                choice = np.where(mask, cost, np.inf).argmin(axis=1)
                nxt_np[ends.forced] = choice[ends.forced]
            out.append(nxt_np)
            if push is not None:
                push(torch.from_numpy(nxt_np).to(device))
            if constraint is not None:
                constraint.advance(st, nxt_np)
            g.advance(st, nxt_np, strict=constraint is None)  # a constraint's forced tokens are its own
            finished = st.finished
            if finished.all():
                break
            ends.update(g, st, finished, step)
            if progress is not None and step % PROGRESS_EVERY == 0:
                progress(ends.done(finished, step), ends.target)
            last, state = stepper(torch.from_numpy(nxt_np).to(device), state)
            last = last.float().cpu()
        else:
            ends.forced |= ~st.finished  # the loop bound: close with EOS below
        if progress is not None:
            progress(ends.target, ends.target)
    return SampleOutput(
        ids=_rows(out, prefix, eos, n),
        primer_tokens=len(prefix),
        hit_cap=ends.hit_cap,
        forced=ends.forced,
        steps=len(out),
        bars=st.bars,
        seconds=st.seconds,
        token_cap=ends.cap,
        close_budget=close_budget,
    )


def _constrain(mask: np.ndarray, ending: np.ndarray, eos: int, allowed: np.ndarray | None) -> np.ndarray:
    """No EOS before the requested length, unless the grammar leaves nothing else; ``allowed`` where the
    grammar leaves a choice within it."""
    early = mask[:, eos] & ~ending
    if early.any():
        mask[early, eos] = False
        stuck = early & ~mask.any(axis=1)
        mask[stuck, eos] = True
    if allowed is not None:
        restricted = mask & allowed
        ok = restricted.any(axis=1)
        mask = np.where(ok[:, None], restricted, mask)
    return mask


def _draw(lg: torch.Tensor, gen: torch.Generator, mask: np.ndarray) -> np.ndarray:
    """One token per row by inverse-CDF sampling: one uniform number per row from the seeded generator."""
    cdf = torch.cumsum(torch.softmax(lg, dim=-1), dim=-1, dtype=torch.float64)
    u = torch.rand((lg.shape[0], 1), generator=gen, dtype=torch.float64) * cdf[:, -1:]
    nxt_np = torch.searchsorted(cdf, u, right=True).numpy()[:, 0]
    bad = nxt_np >= lg.shape[1]
    if bad.any():  # u rounded up to the total: take the last allowed token
        nxt_np[bad] = lg.shape[1] - 1 - np.argmax(mask[bad, ::-1], axis=1)
    return nxt_np


def _rows(out: list[np.ndarray], prefix: np.ndarray, eos: int, n: int) -> list[np.ndarray]:
    """Per row: the prefix, then the sampled tokens up to and including its EOS (added if missing)."""
    body = np.stack(out, axis=1) if out else np.zeros((n, 0), dtype=np.int64)
    rows = []
    for r in range(n):
        seq = body[r]
        stop = np.flatnonzero(seq == eos)
        seq = seq[: stop[0] + 1] if len(stop) else np.concatenate([seq, [eos]])
        rows.append(np.concatenate([prefix, seq]).astype(np.uint16))
    return rows


# ---------------------------------------------------------------------------------------------- songs


_MMAP_THRESHOLD = 1 << 16


@functools.cache
def _fixed_mmap_threshold() -> None:
    """Have glibc serve every allocation of 64 KiB and up with its own mapping, returned when freed.

    The cache's per-step buffers grow with the song; under glibc's default, whose threshold rises with
    each freed block, they come from the heap instead and fragment it until a long batch of songs with
    the cache holds many GB (README, Form). A MALLOC_MMAP_THRESHOLD_ set by the user wins; elsewhere (not
    glibc) this does nothing. Once per process."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt(-3, _MMAP_THRESHOLD)  # M_MMAP_THRESHOLD; fixing it also stops its growth
    except (OSError, AttributeError):
        pass


def generate(
    checkpoint: str | os.PathLike[str] | Checkpoint | None,
    n: int = 4,
    *,
    length: Length | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
    primer: Path | None = None,
    bpm: float | None = None,
    device: str = "cpu",
    progress: ProgressFn | None = None,
    notices: list[str] | None = None,
    cache: bool | CacheConfig | None = None,
    conditions: Mapping[str, str] | None = None,
    instruments: Sequence[int] | None = None,
) -> list[GeneratedSong]:
    """Generate ``n`` songs from a checkpoint (path, run folder or loaded ``Checkpoint``) in one batch.

    ``length``: after the primer (``primer``: a MIDI file the songs continue); 30 s by default. ``bpm``:
    one tempo for the files (``Tokenizer.retime``), which sampling is steered to where the tokens carry
    tempo. ``notices`` (if given) collects remarks that concern the whole run (checks that had to be
    skipped). ``cache``: sample with the checkpoint's fitted neural cache (True; an error if it has
    none), without it (False), with it where it has one (None), or with this ``CacheConfig``.
    ``conditions``: condition name -> value (``composer.conditions.steering`` makes it from what a user
    asks). ``instruments``: programs (drums 128) the songs play, and no others.
    """
    from composer.device import resolve_device

    _fixed_mmap_threshold()
    length = length if length is not None else Length()
    check_sampling_options(temperature, top_k, top_p)
    check_bpm(bpm)
    if not 1 <= n <= MAX_SONGS:
        raise ConfigError(f"number of songs must be in 1..{MAX_SONGS}, got {n}")
    dev = resolve_device(device)
    ckpt = _checkpoint(checkpoint, dev)
    tok = ckpt.tokenizer
    if length.bars is not None and not tok.has_bars:
        raise ConfigError(
            f"--bars needs a model with the beat encoding; {ckpt.path} uses the {tok.encoding} encoding "
            "(use --seconds or --tokens)"
        )
    cache_config = _cache_config(ckpt, cache)
    programs, density = corpus_statistics(ckpt)
    if instruments is not None:
        _check_instruments(ckpt, instruments, programs)
    primer_ids: np.ndarray | None = None
    primer_notes = 0
    if primer is not None:
        primer_ids, primer_notes, primer_density = _read_primer(Path(primer), tok, programs, notices)
        density = density or primer_density

    def sample(rows: int, attempt: int) -> SampleOutput:
        return sample_ids(
            ckpt.model,
            tok,
            rows,
            length,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=torch.Generator(device="cpu").manual_seed(int(seed) + FIT_SEED_STRIDE * attempt),
            primer_ids=primer_ids,
            tempo=None if bpm is None else tok.tempo_steering(bpm),
            device=dev,
            progress=progress,
            cache=cache_config,
            conditions=conditions,
            programs=None if instruments is None else set(instruments),
        )

    raw = sample(n, 0)
    notes: list[str | None] = [None] * n
    asked = asked_of(tok, conditions, fixed_tempo=bpm is not None)
    if asked and primer_ids is None:  # a primer's music is the user's: it is neither moved nor judged
        raw, notes = fit_songs(raw, tok, asked, sample)
    songs = songs_from_sample(
        raw, tok, bpm=bpm, density=density, min_seconds=length.seconds or 0.0, primer_notes=primer_notes
    )
    for song, note in zip(songs, notes):
        if note is not None:
            song.warnings.append(note)
    return songs


#: Samplings ``generate`` tries for a song that is not what was asked (``fit_songs``).
FIT_TRIES = 8
FIT_SEED_STRIDE = 1_000_003  # attempt k of ``generate`` samples with seed + k * this

#: The levelled attributes ``fit_songs`` measures: name -> (measure of a decoded song, its unit).
LEVEL_MEASURES: dict[str, tuple[Callable[[Score], float], str]] = {
    "density": (note_density, "notes per quarter"),
    "tempo": (median_tempo, "bpm"),
}


@dataclass(frozen=True)
class Asked:
    """What ``generate`` checks each song against, beyond steering the model towards it: a key (the mode
    checked, the tonic made exact by transposition) and levels of measured attributes (name in
    ``LEVEL_MEASURES`` -> (level, the corpus's tercile bounds))."""

    key: Key | None = None
    levels: Mapping[str, tuple[str, tuple[float, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (level, _) in self.levels.items():
            if name not in LEVEL_MEASURES:
                raise ConfigError(f"a measured level is one of {', '.join(LEVEL_MEASURES)}, got {name!r}")
            if level not in LEVELS:
                raise ConfigError(f"{name} level must be one of {', '.join(LEVELS)}, got {level!r}")

    def __bool__(self) -> bool:
        return self.key is not None or bool(self.levels)

    def describe(self) -> str:
        """e.g. ``in minor with density high``"""
        parts = [] if self.key is None else [f"in {self.key.mode}"]
        parts += [f"with {name} {level}" for name, (level, _) in self.levels.items()]
        return " ".join(parts)


def level_bounds(tok: Tokenizer, name: str) -> tuple[float, float] | None:
    """The corpus terciles of a levelled condition as a song can meet them: a tempo bound in the tokens'
    resolution (a corpus all at 80 bpm has its mid level at exactly 80, which the nearest TEMPO token,
    80.7, would always miss); None where the model has no such condition."""
    bounds = tok.conditions.bounds.get(name) if tok.conditions is not None else None
    if bounds is None or name != "tempo":
        return bounds
    return tok.decoded_tempo(bounds[0]), tok.decoded_tempo(bounds[1])


def asked_of(tok: Tokenizer, conditions: Mapping[str, str] | None, *, fixed_tempo: bool = False) -> Asked:
    """What ``generate`` checks for the conditions asked: the key, and the density and tempo levels the
    model knows the corpus bounds of (not the tempo where one is set, ``fixed_tempo``: ``--bpm``)."""
    conditions = conditions or {}
    bounds = {name: b for name in LEVEL_MEASURES if (b := level_bounds(tok, name)) is not None}
    levels = {
        name: (conditions[name], bounds[name])
        for name in LEVEL_MEASURES
        if name in conditions and name in bounds and not (name == "tempo" and fixed_tempo)
    }
    key = conditions.get("key")
    return Asked(key=None if key is None else parse_key(key), levels=levels)


def _level_range(level: str, bounds: tuple[float, float]) -> str:
    lo, hi = bounds
    return (
        f"below {lo:g}" if level == LEVELS[0] else f"above {hi:g}" if level == LEVELS[2] else f"{lo:g}-{hi:g}"
    )


def _fit(ids: np.ndarray, tok: Tokenizer, asked: Asked) -> tuple[np.ndarray, list[str]]:
    """One song made what was asked where a transposition can (the key), and what it still misses."""
    score = tok.decode(ids)
    misses = []
    if asked.key is not None:
        found = estimate_key(score)
        shift = key_shift(found, asked.key)
        moved = None
        if shift is not None:
            for s in sorted({shift, shift - 12, shift + 12}, key=abs):
                if -12 < s < 12 and (moved := tok.transposed(ids, s)) is not None:
                    break
        if moved is None:
            got = found.name if found is not None else "no key"
            misses.append(f"in {got}, not the asked {asked.key.name}")
        else:
            ids = moved.astype(ids.dtype)
    for name, (level, bounds) in asked.levels.items():
        measure, unit = LEVEL_MEASURES[name]
        value = measure(score)
        if level_of(value, bounds) != level:
            misses.append(f"{value:g} {unit}, not the asked {name} {level} ({_level_range(level, bounds)})")
    return ids, misses


def fit_songs(
    raw: SampleOutput, tok: Tokenizer, asked: Asked, resample: Callable[[int, int], SampleOutput]
) -> tuple[SampleOutput, list[str | None]]:
    """``raw``'s songs made what was ``asked``: a song whose estimated key has the asked mode is
    transposed to the asked tonic (by at most a tritone, an octave the other way where a note would
    leave the range); a song in the other mode, or whose measured density or tempo is outside the asked
    level's corpus range, is sampled again, ``resample(rows, attempt)``, up to ``FIT_TRIES`` samplings in
    all. A song no attempt made all that was asked is the attempt that missed least (the first of equals),
    with a note saying what it misses (per song; None for the others).

    The conditions steer the model towards what was asked; this makes the tonic exact and the rest a
    matter of a few tries (README: Steering)."""
    n = len(raw.ids)
    best: list[tuple[list[str], SampleOutput, int, np.ndarray] | None] = [None] * n
    pending = list(range(n))
    attempt = raw
    for k in range(FIT_TRIES):
        if k:
            attempt = resample(len(pending), k)
        still = []
        for j, row in enumerate(pending):
            ids, misses = _fit(attempt.ids[j], tok, asked)
            held = best[row]
            if held is None or len(misses) < len(held[0]):
                best[row] = (misses, attempt, j, ids)
            if misses:
                still.append(row)
        pending = still
        if not pending:
            break
    rows = [b for b in best if b is not None]
    notes: list[str | None] = [
        f"{'; '.join(m)}: {FIT_TRIES} samplings found none {asked.describe()}" if m else None
        for m, *_ in rows
    ]
    return (
        SampleOutput(
            ids=[ids for *_, ids in rows],
            primer_tokens=raw.primer_tokens,
            hit_cap=np.array([o.hit_cap[j] for _, o, j, _ in rows], dtype=bool),
            forced=np.array([o.forced[j] for _, o, j, _ in rows], dtype=bool),
            steps=max(o.steps for _, o, _, _ in rows),
            bars=np.array([o.bars[j] for _, o, j, _ in rows], dtype=np.int64),
            seconds=np.array([o.seconds[j] for _, o, j, _ in rows], dtype=np.float64),
            token_cap=raw.token_cap,
            close_budget=raw.close_budget,
            cache=raw.cache,
        ),
        notes,
    )


def _check_instruments(ckpt: Checkpoint, instruments: Sequence[int], programs: set[int] | None) -> None:
    """Instruments a song may be limited to: ones the model was trained on, where it records them."""
    from composer.conditions import instrument_names

    if not instruments:
        raise ConfigError("--instruments needs at least one instrument")
    if programs is not None:
        unknown = sorted(set(instruments) - programs)
        if unknown:
            raise ConfigError(
                f"--instruments: the model never heard {instrument_names(unknown)}; it was trained on "
                f"{instrument_names(sorted(programs))}"
            )


def _cache_config(ckpt: Checkpoint, cache: bool | CacheConfig | None) -> CacheConfig | None:
    """The neural cache ``generate`` samples with (see its ``cache``), or None."""
    if isinstance(cache, CacheConfig):
        return cache
    if cache is True and ckpt.cache is None:
        raise ConfigError(f"{ckpt.path} has no fitted neural cache (composer fit-cache {ckpt.path} fits one)")
    if cache is False or ckpt.cache is None:
        return None
    return ckpt.cache.sampling


def _read_primer(
    path: Path, tok: Tokenizer, programs: set[int] | None, notices: list[str] | None
) -> tuple[np.ndarray, int, float | None]:
    """The primer's token ids, its notes and notes per second; its instruments checked against
    ``programs`` (those the model saw), or a notice where the checkpoint does not record them."""
    ids, score = encode_primer(path, tok)
    notes = tok.note_count(ids)
    if programs is not None:
        check_primer_programs(path, score, programs)
    elif notices is not None:
        notices.append("the checkpoint does not say which instruments it was trained on; primer not checked")
    dur = score.duration_seconds
    return ids, notes, (notes / dur if dur > 0 and notes else None)


def _checkpoint(checkpoint: str | os.PathLike[str] | Checkpoint | None, dev: torch.device) -> Checkpoint:
    """A loaded checkpoint (the default one for None), its model on ``dev``."""
    from composer.checkpoint import Checkpoint, load_checkpoint

    if isinstance(checkpoint, Checkpoint):
        checkpoint.model.to(dev)
        return checkpoint
    return load_checkpoint(checkpoint if checkpoint is not None else DEFAULT_CHECKPOINT, device=dev)


def corpus_statistics(ckpt: Checkpoint) -> tuple[set[int] | None, float | None]:
    """(programs the model was trained on, notes per second of its corpus), where the checkpoint's corpus
    metadata records them (``Corpus.statistics``); None for what it does not."""
    meta = ckpt.meta.get("corpus") or {}
    programs, density = meta.get("programs"), meta.get("notes_per_second")
    return (None if programs is None else {int(p) for p in programs}), (
        None if density is None else float(density)
    )
