"""Generation: sample new pieces from a trained checkpoint, valid by construction.

The ``n`` songs are sampled as one batch. The LSTM state is carried token by token (feed one token, get
the logits, sample, feed the sample), so every token costs the same however long the song already is;
nothing is ever re-run over a window. At each step the tokenizer's grammar says which tokens may come
next; the others get a logit of -inf *before* temperature, top-k and top-p, so every sampled sequence is
one the encoder itself could have written: every note is closed and the piece decodes to valid music.

Length: ``Length(seconds=...)``, ``Length(bars=...)`` or ``Length(tokens=...)`` of music after the primer
(if any). When a row reaches it the grammar is asked to end the piece cleanly: the beat encoding finishes
the bar it is in and stops on the bar line, the performance encoding releases the notes still sounding.
A hard token cap keeps a model that never gets there from running forever; past it the piece is closed
deterministically with the fewest tokens the grammar allows, and the song carries a warning.

Sampling runs on the CPU with a seeded ``torch.Generator`` (the model itself may run on ``device``), so
the same checkpoint, options and seed give byte-identical files on a given machine.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from composer.errors import ComposerError, ConfigError, MidiReadError
from composer.midi import Score, TempoChange
from composer.model import LSTMModel

if TYPE_CHECKING:  # pragma: no cover
    from composer.checkpoint import Checkpoint
    from composer.tokenizer import Tokenizer
    from composer.tokenizer.grammar import Grammar, GrammarState

#: The model the quick start trains (``make demo``); ``composer generate`` uses it when given none.
DEFAULT_CHECKPOINT = Path("checkpoints/bach")
#: Length when none is asked for.
DEFAULT_SECONDS = 30.0
#: The longest piece one may ask for, in each unit.
MAX_SECONDS = 3600.0
MAX_BARS = 2000
MAX_TOKENS = 500_000
#: Token budget per unit of length before the hard cap stops a row (generous: dense multitrack music
#: runs to a few hundred tokens per second, a few hundred per bar).
CAP_TOKENS_PER_SECOND = 600
CAP_TOKENS_PER_BAR = 1500
CAP_MIN_TOKENS = 1024
#: Tokens a row may still sample after the end was requested before it is closed deterministically.
CLOSE_BUDGET = 512
#: Tempo range ``--bpm`` accepts.
MIN_BPM, MAX_BPM = 20.0, 400.0
#: Degenerate-output thresholds.
SILENCE_WARN_S = 8.0
REPEAT_WARN_SHARE = 0.8
REPEAT_WARN_MIN_NOTES = 10
FEW_NOTES_SHARE = 0.2  # of the expected note count
FALLBACK_NOTES_PER_SECOND = 1.0  # expected density when neither the corpus nor a primer tells
#: How often (in steps) the progress callback is called.
PROGRESS_EVERY = 16

ProgressFn = Callable[[float, float], None]


# ------------------------------------------------------------------------------------------------ options


@dataclass(frozen=True)
class Length:
    """How much music to generate after the primer: exactly one of seconds, bars or tokens."""

    seconds: float | None = None
    bars: int | None = None
    tokens: int | None = None

    def __post_init__(self) -> None:
        given = [k for k in ("seconds", "bars", "tokens") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ConfigError(f"give one length, not {' and '.join('--' + k for k in given)}")
        if not given:
            object.__setattr__(self, "seconds", DEFAULT_SECONDS)
        if self.seconds is not None:
            s = float(self.seconds)
            if not math.isfinite(s) or s <= 0 or s > MAX_SECONDS:
                raise ConfigError(f"--seconds must be > 0 and at most {MAX_SECONDS:g}, got {self.seconds:g}")
            object.__setattr__(self, "seconds", s)
        if self.bars is not None and not 1 <= self.bars <= MAX_BARS:
            raise ConfigError(f"--bars must be in 1..{MAX_BARS}, got {self.bars}")
        if self.tokens is not None and not 1 <= self.tokens <= MAX_TOKENS:
            raise ConfigError(f"--tokens must be in 1..{MAX_TOKENS}, got {self.tokens}")

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
        if self.tokens is not None:
            return self.tokens
        est = self.amount * (CAP_TOKENS_PER_SECOND if self.seconds is not None else CAP_TOKENS_PER_BAR)
        return int(min(MAX_TOKENS, max(CAP_MIN_TOKENS, math.ceil(est))))


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
    bars: np.ndarray  # int (batch,) bars started (beat), from the grammar
    seconds: np.ndarray  # float (batch,) music time per the grammar (model tempo)


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


def _close_cost(tok: Tokenizer) -> np.ndarray:
    """Per token id, how far it leads from the end of a piece; the cheapest allowed token closes fastest."""
    v = tok.vocab
    cost = np.full(v.size, 50.0)
    order = [
        ("EOS", 0),
        ("NOTE_OFF", 1),
        ("DURATION", 1),
        ("TEMPO", 2),
        ("PROGRAM", 3),
        ("PITCH", 4),
        ("VELOCITY", 4),
        ("NOTE_ON", 20),
        ("POSITION", 10),
        ("TIME_SHIFT", 10),
        ("BAR", 30),
        ("TIME_SIGNATURE", 30),
    ]
    for kind, c in order:
        if kind in v:
            m = v.mask(kind)
            # later positions / longer shifts / durations cost a little more, so the earliest one wins
            cost[m] = c + np.linspace(0, 0.5, int(m.sum()))
    if "DURATION" in v:
        cost[v.offset("DURATION") + v.range("DURATION").size - 1] = 40  # a maximal duration chains on
    cost[tok.pad_id] = 100
    return cost


class Stepper:
    """Feed one token per row, get the next-token logits; the LSTM state is carried between calls.

    Uses ``model.step`` (one ``torch.lstm_cell`` per layer, see ``LSTMModel.step``) where the model has
    it; any other model is called as ``model(tokens (B, 1), state) -> (logits (B, 1, V), state)``.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.fast = isinstance(model, LSTMModel)

    def prime(self, tokens: torch.Tensor, batch: int) -> tuple[torch.Tensor, Any]:
        """Run ``tokens`` (T,) once; return the last logits and the state, both repeated ``batch`` times."""
        logits, (h, c) = self.model(tokens.unsqueeze(0), None)
        last = logits[0, -1].float().unsqueeze(0).expand(batch, -1)
        return last, (h.expand(-1, batch, -1).contiguous(), c.expand(-1, batch, -1).contiguous())

    def __call__(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """``tokens`` (B,) long -> logits (B, V) and the new state."""
        if self.fast:
            return self.model.step(tokens, state)  # type: ignore[operator]
        logits, state = self.model(tokens.unsqueeze(1), state)
        return logits[:, -1], state


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
    tempo_bin: int | None = None,
    seconds_scale: float = 1.0,
    device: torch.device | str = "cpu",
    progress: ProgressFn | None = None,
    grammar: Grammar | None = None,
    close_budget: int = CLOSE_BUDGET,
    num_threads: int | None = 1,
) -> SampleOutput:
    """Sample ``n`` token sequences in one batch, carrying the LSTM state token by token.

    ``primer_ids`` (BOS ..., no EOS) is run through the model once and through the grammar leniently;
    sampling continues from there. ``tempo_bin`` (beat encoding) restricts TEMPO tokens to that bin.
    ``seconds_scale`` multiplies the seconds target (the grammar counts time at the model's tempo).
    ``close_budget``: tokens a row may still sample after its end was requested before it is closed
    deterministically (0 closes at once, as the benchmark does to count tokens exactly).
    ``num_threads``: torch CPU threads while sampling (restored afterwards; None leaves them as they
    are). One by default: a step is a few small matrix products, too little to share out, and a second
    thread that has to wait for a busy core makes every step many times slower.
    """
    check_sampling_options(temperature, top_k, top_p)
    if n < 1:
        raise ConfigError(f"number of songs must be at least 1, got {n}")
    device = torch.device(device)
    g = grammar if grammar is not None else tok.grammar()
    V = tok.vocab.size
    eos = tok.eos_id
    filt = _Filter(temperature, top_k, top_p, V)
    gen = generator if generator is not None else torch.Generator().manual_seed(0)

    prefix = np.asarray(primer_ids if primer_ids is not None else [tok.bos_id], dtype=np.int64)
    if len(prefix) == 0 or prefix[0] != tok.bos_id:
        prefix = np.concatenate([[tok.bos_id], prefix])
    if (prefix == eos).any():
        prefix = prefix[: int(np.argmax(prefix == eos))]

    extra: np.ndarray | None = None  # an additional restriction on top of the grammar (tempo)
    if tempo_bin is not None and "TEMPO" in tok.vocab:
        extra = np.ones(V, dtype=bool)
        extra[tok.vocab.mask("TEMPO")] = False
        extra[tok.vocab.offset("TEMPO") + tempo_bin] = True

    was_training = model.training
    model.eval()
    threads_before = torch.get_num_threads()
    if num_threads is not None and device.type == "cpu":
        torch.set_num_threads(num_threads)
    try:
        return _sample_loop(
            model, tok, g, n, length, filt, gen, prefix, extra, seconds_scale, device, progress, close_budget
        )
    finally:
        torch.set_num_threads(threads_before)
        if was_training:
            model.train()


def _sample_loop(
    model: torch.nn.Module,
    tok: Tokenizer,
    g: Grammar,
    n: int,
    length: Length,
    filt: _Filter,
    gen: torch.Generator,
    prefix: np.ndarray,
    extra: np.ndarray | None,
    seconds_scale: float,
    device: torch.device,
    progress: ProgressFn | None,
    close_budget: int,
) -> SampleOutput:
    V = tok.vocab.size
    eos = tok.eos_id
    cost = _close_cost(tok)
    stepper = Stepper(model)
    st: GrammarState = g.start(n)
    cap = length.token_cap()
    step = 0
    with torch.inference_mode():
        last, state = stepper.prime(torch.as_tensor(prefix, dtype=torch.long, device=device), n)
        last = last.cpu()
        for t in prefix[1:].tolist():
            g.advance(st, np.full(n, t, dtype=np.int64), strict=False)

        # length targets, counted from where the primer ends
        if length.seconds is not None:
            target = length.seconds * seconds_scale
            base = st.seconds.copy()

            def measure() -> np.ndarray:
                return st.seconds - base

        elif length.bars is not None:
            target = float(length.bars)
            base_bars = st.bars.copy()

            def measure() -> np.ndarray:
                return (st.bars - base_bars).astype(np.float64)

        else:
            target = float(length.tokens or 0)

            def measure() -> np.ndarray:
                return np.full(n, float(step + 1))

        ending = np.zeros(n, dtype=bool)  # the end was requested
        hit_cap = np.zeros(n, dtype=bool)
        forced = np.zeros(n, dtype=bool)
        end_step = np.zeros(n, dtype=np.int64)
        neg_inf = torch.tensor(-math.inf)
        out: list[np.ndarray] = []
        any_forced = False
        for step in range(cap + 2 * close_budget + 20_000):  # noqa: B007 - measure() reads `step`
            mask = st.mask()
            # no EOS before the requested length, unless the grammar leaves nothing else
            early = mask[:, eos] & ~ending
            if early.any():
                mask[early, eos] = False
                stuck = early & ~mask.any(axis=1)
                mask[stuck, eos] = True
            if extra is not None:
                restricted = mask & extra
                ok = restricted.any(axis=1)
                mask = np.where(ok[:, None], restricted, mask)
            lg = filt(torch.where(torch.from_numpy(mask), last, neg_inf))
            # inverse-CDF sampling: one uniform number per row from the seeded generator
            cdf = torch.cumsum(torch.softmax(lg, dim=-1), dim=-1, dtype=torch.float64)
            u = torch.rand((n, 1), generator=gen, dtype=torch.float64) * cdf[:, -1:]
            nxt_np = torch.searchsorted(cdf, u, right=True).numpy()[:, 0]
            bad = nxt_np >= V
            if bad.any():  # u rounded up to the total: take the last allowed token
                nxt_np[bad] = V - 1 - np.argmax(mask[bad, ::-1], axis=1)
            if any_forced:  # past the close budget: the cheapest way out, no sampling
                choice = np.where(mask, cost, np.inf).argmin(axis=1)
                nxt_np[forced] = choice[forced]
            out.append(nxt_np)
            g.advance(st, nxt_np, strict=True)
            finished = st.finished
            if finished.all():
                break
            # the requested length reached -> end cleanly; the hard cap -> end now
            live = ~finished & ~ending
            if live.any():
                reached = live & (measure() >= target)
                if step + 1 >= cap:
                    if length.tokens is None:
                        hit_cap |= live & ~reached
                    reached = live
                if reached.any():
                    g.request_end(st, reached)
                    ending |= reached
                    end_step[reached] = step
            over = ending & ~finished & ~forced & (step - end_step >= close_budget)
            if over.any():
                forced |= over
                any_forced = True
            if progress is not None and step % PROGRESS_EVERY == 0:
                done = np.where(finished | ending, target, np.minimum(measure(), target))
                progress(float(done.mean()), target)
            last, state = stepper(torch.from_numpy(nxt_np).to(device), state)
            last = last.float().cpu()
        else:
            forced |= ~st.finished  # the loop bound: close with EOS below
        if progress is not None:
            progress(target, target)

    body = np.stack(out, axis=1) if out else np.zeros((n, 0), dtype=np.int64)
    rows = []
    for r in range(n):
        seq = body[r]
        stop = np.flatnonzero(seq == eos)
        seq = seq[: stop[0] + 1] if len(stop) else np.concatenate([seq, [eos]])
        rows.append(np.concatenate([prefix, seq]).astype(np.uint16))
    return SampleOutput(
        ids=rows,
        primer_tokens=len(prefix),
        hit_cap=hit_cap,
        forced=forced,
        steps=len(out),
        bars=st.bars,
        seconds=st.seconds,
    )


# ---------------------------------------------------------------------------------------------- songs


@dataclass
class GeneratedSong:
    """One generated piece: its tokens, the decoded Score, and what it came to."""

    index: int  # 1-based place in the batch
    ids: np.ndarray
    score: Score
    notes: int
    seconds: float
    bars: int | None  # bars (beat encoding), None for performance
    tokens: int
    primer_notes: int = 0
    warnings: list[str] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        return {
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "bars": self.bars,
            "tokens": self.tokens,
            "primer_notes": self.primer_notes,
            "warnings": list(self.warnings),
        }


def degenerate_warnings(
    score: Score, expected_notes_per_second: float | None = None, min_seconds: float = 0.0
) -> list[str]:
    """Why a piece looks degenerate: long silences, one pitch over and over, far too few notes."""
    warns: list[str] = []
    starts, ends, pitches = [], [], []
    for inst in score.instruments:
        for nt in inst.notes:
            starts.append(nt.start)
            ends.append(nt.end)
            pitches.append(-1 if inst.is_drum else nt.pitch)
    if not starts:
        return ["no notes at all"]
    s = score.ticks_to_seconds(np.array(starts, dtype=np.int64))
    e = score.ticks_to_seconds(np.array(ends, dtype=np.int64))
    order = np.argsort(s, kind="stable")
    s, e = s[order], e[order]
    covered = np.maximum.accumulate(np.concatenate([[0.0], e[:-1]]))
    gaps = s - covered
    k = int(np.argmax(gaps))
    if gaps[k] > SILENCE_WARN_S:
        warns.append(f"silence of {gaps[k]:.1f} s at {covered[k]:.1f} s")
    pitched = np.array([p for p in pitches if p >= 0], dtype=np.int64)
    if len(pitched) >= REPEAT_WARN_MIN_NOTES:
        counts = np.bincount(pitched, minlength=128)
        top = int(counts.argmax())
        share = counts[top] / len(pitched)
        if share > REPEAT_WARN_SHARE:
            warns.append(f"one note repeated: {share:.0%} of the notes are pitch {top}")
    seconds = max(float(e.max()), min_seconds)
    density = expected_notes_per_second or FALLBACK_NOTES_PER_SECOND
    expected = density * seconds
    if expected >= 5 and len(starts) < FEW_NOTES_SHARE * expected:
        warns.append(
            f"far fewer notes than expected ({len(starts)} in {seconds:.1f} s, ~{expected:.0f} expected)"
        )
    return warns


def apply_bpm(score: Score, bpm: float, encoding: str) -> Score:
    """Give a decoded score one tempo, ``bpm``.

    beat: the tempo map is replaced by that one tempo; the notes stay on their beats, so the piece
    lasts longer or shorter. performance: the notes keep their times in seconds; the ticks are rescaled
    (at a resolution of at least 1 ms per tick) so that a DAW's grid shows ``bpm``.
    """
    if encoding == "beat":
        score.tempos = [TempoChange(0, float(bpm))]
        return score
    new_tpq = next(t for t in (480, 960, 1920, 3840, 7680) if t >= 60_000 / bpm)
    old_t0, old_s0, old_spt = score.tempo_map()
    factor = bpm * new_tpq / 60.0  # ticks per second at the new tempo

    def conv(tick: int) -> int:
        i = int(np.searchsorted(old_t0, tick, side="right") - 1)
        return int(round((old_s0[i] + (tick - old_t0[i]) * old_spt[i]) * factor))

    for inst in score.instruments:
        for nt in inst.notes:
            nt.start, nt.end = conv(nt.start), max(conv(nt.end), conv(nt.start) + 1)
    score.time_signatures = [
        type(ts)(conv(ts.tick), ts.numerator, ts.denominator) for ts in score.time_signatures
    ]
    score.ticks_per_beat = new_tpq
    score.tempos = [TempoChange(0, float(bpm))]
    return score


def _corpus_info(ckpt: Checkpoint) -> tuple[set[int] | None, float | None]:
    """(programs the model was trained on, notes per second of its corpus), where known.

    From the checkpoint's ``corpus`` metadata (``programs``, ``notes_per_second``) if it carries them,
    else from the corpus folder it names, if that is still there and unchanged; (None, None) otherwise.
    """
    meta = ckpt.meta.get("corpus") or {}
    programs = meta.get("programs")
    density = meta.get("notes_per_second")
    if programs is not None and density is not None:
        return {int(p) for p in programs}, float(density)
    path = ckpt.corpus_path
    if path and (Path(path) / "manifest.json").is_file():
        try:
            m = json.loads((Path(path) / "manifest.json").read_text())
            if m.get("fingerprint") == ckpt.corpus_fingerprint:
                files = m.get("files") or []
                progs = {int(p) for f in files for p in f.get("programs", ())}
                secs = sum(float(f.get("seconds", 0)) for f in files)
                notes = sum(int(f.get("notes", 0)) for f in files)
                if programs is None and any("programs" in f for f in files):
                    programs = progs
                if density is None and secs > 0:
                    density = notes / secs
        except (OSError, ValueError, TypeError, AttributeError):
            pass
    return (None if programs is None else {int(p) for p in programs}), (
        None if density is None else float(density)
    )


def encode_primer(path: Path, tok: Tokenizer) -> tuple[np.ndarray, Score]:
    """A primer MIDI file as token ids (BOS ..., EOS dropped); one-line errors naming the file."""
    from composer.midi import read_midi

    try:
        score = read_midi(path)
    except MidiReadError as e:
        raise MidiReadError(f"primer {path}: {e}") from None
    if score.note_count == 0:
        raise MidiReadError(f"primer {path}: has no notes")
    try:
        ids, _stats = tok.encode(score)
    except ComposerError as e:
        raise ComposerError(f"primer {path}: {e}") from None
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) and ids[-1] == tok.eos_id:
        ids = ids[:-1]
    if len(ids) > MAX_TOKENS:
        raise ConfigError(f"primer {path}: {len(ids)} tokens, more than the {MAX_TOKENS} allowed")
    return ids, score


def generate(
    checkpoint: str | os.PathLike[str] | Checkpoint | None,
    n: int = 4,
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
) -> list[GeneratedSong]:
    """Generate ``n`` songs from a checkpoint (path, run folder or loaded ``Checkpoint``) in one batch.

    ``notices`` (if given) collects remarks that concern the whole run (checks that had to be skipped).
    """
    from composer.checkpoint import Checkpoint, load_checkpoint
    from composer.device import resolve_device

    length = length if length is not None else Length()
    check_sampling_options(temperature, top_k, top_p)
    check_bpm(bpm)
    if not 1 <= n <= 4096:
        raise ConfigError(f"number of songs must be in 1..4096, got {n}")
    dev = resolve_device(device)
    if isinstance(checkpoint, Checkpoint):
        ckpt = checkpoint
        ckpt.model.to(dev)
    else:
        ckpt = load_checkpoint(checkpoint if checkpoint is not None else DEFAULT_CHECKPOINT, device=dev)
    tok = ckpt.tokenizer
    if length.bars is not None and tok.encoding != "beat":
        raise ConfigError(
            f"--bars needs a model with the beat encoding; {ckpt.path} uses the {tok.encoding} encoding "
            "(use --seconds or --tokens)"
        )
    programs, density = _corpus_info(ckpt)

    primer_ids: np.ndarray | None = None
    primer_notes = 0
    if primer is not None:
        primer_ids, pscore = encode_primer(Path(primer), tok)
        primer_notes = tok.note_count(primer_ids)
        used = {128 if i.is_drum else i.program for i in pscore.instruments if i.notes}
        if programs is None:
            if notices is not None:
                notices.append(
                    "the checkpoint does not say which instruments it was trained on; primer not checked"
                )
        else:
            unseen = sorted(used - programs)
            if unseen:
                from composer.midi import program_name

                names = ", ".join(
                    f"{program_name(p if p < 128 else 0, p == 128)} (program {p})" for p in unseen
                )
                raise ConfigError(f"primer {primer} uses instruments the model never saw: {names}")
        dur = pscore.duration_seconds
        if dur > 0 and primer_notes:
            density = density or primer_notes / dur

    tempo_bin = None
    seconds_scale = 1.0
    if bpm is not None and tok.encoding == "beat":
        tempo_bin = tok.tempo_bin(bpm)  # type: ignore[attr-defined]
        seconds_scale = bpm / float(tok.tempo_values[tempo_bin])  # type: ignore[attr-defined]

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    raw = sample_ids(
        ckpt.model,
        tok,
        n,
        length,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=gen,
        primer_ids=primer_ids,
        tempo_bin=tempo_bin,
        seconds_scale=seconds_scale,
        device=dev,
        progress=progress,
    )
    songs = []
    for i, ids in enumerate(raw.ids):
        score = tok.decode(ids)
        if bpm is not None:
            score = apply_bpm(score, bpm, tok.encoding)
        seconds = score.duration_seconds
        warns = degenerate_warnings(score, density, min_seconds=length.seconds or 0.0)
        if raw.hit_cap[i]:
            warns.append(
                f"stopped by the token cap ({length.token_cap()} tokens) before the requested length"
            )
        if raw.forced[i]:
            warns.append(f"did not end within {CLOSE_BUDGET} tokens of the requested end; closed by force")
        songs.append(
            GeneratedSong(
                index=i + 1,
                ids=ids,
                score=score,
                notes=score.note_count,
                seconds=seconds,
                bars=int(raw.bars[i]) if tok.encoding == "beat" else None,
                tokens=len(ids),
                primer_notes=primer_notes,
                warnings=warns,
            )
        )
    return songs


# ---------------------------------------------------------------------------------------------- saving


def song_paths(out_dir: Path, n: int, plot: bool) -> list[Path]:
    """Every file ``save_songs`` will write for ``n`` songs."""
    paths = []
    for i in range(1, n + 1):
        stem = f"song_{i:03d}"
        paths += [out_dir / f"{stem}.mid", out_dir / f"{stem}.json"]
        if plot:
            paths.append(out_dir / f"{stem}.png")
    return paths


def prepare_out_dir(out_dir: Path, n: int, plot: bool, force: bool, create: bool = True) -> None:
    """Check, before anything is generated, that every song file may be written; create ``out_dir``.

    With ``create=False`` nothing is touched: the folder (or the nearest existing folder above it) must
    be a writable folder, and without ``force`` none of the files may exist yet.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ComposerError(f"{out_dir}: cannot write songs there (it is a file, not a folder)")
    if not force and out_dir.is_dir():
        for p in song_paths(out_dir, n, plot):
            if p.exists():
                raise ComposerError(f"{p} exists (use --force to overwrite)")
    if not create:
        above = out_dir
        while not above.exists() and above != above.parent:
            above = above.parent
        if above.exists() and not above.is_dir():
            raise ComposerError(f"{out_dir}: cannot create the output folder ({above} is a file)")
        if not os.access(above, os.W_OK | os.X_OK):
            raise ComposerError(f"{out_dir}: cannot write songs there ({above} is not writable)")
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ComposerError(f"{out_dir}: cannot create the output folder ({e.strerror or e})") from None
    probe = out_dir / f".composer-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ComposerError(f"{out_dir}: output folder is not writable ({e.strerror or e})") from None


def save_songs(
    songs: list[GeneratedSong],
    out_dir: str | os.PathLike[str],
    force: bool = False,
    plot: bool = False,
    meta: dict[str, Any] | None = None,
) -> list[Path]:
    """Write ``song_NNN.mid`` + ``song_NNN.json`` (+ ``song_NNN.png`` with ``plot``) for each song.

    ``meta`` (checkpoint, options, seed ...) goes into every sidecar. Existing files are refused without
    ``force`` before anything is written. Returns the MIDI paths.
    """
    from composer.fsutil import atomic_write_text
    from composer.midi import write_midi

    out = Path(out_dir)
    prepare_out_dir(out, max((s.index for s in songs), default=0), plot, force)
    written = []
    for s in songs:
        stem = f"song_{s.index:03d}"
        mid = out / f"{stem}.mid"
        try:
            write_midi(s.score, mid)
            sidecar = {"file": mid.name, **(meta or {}), "index": s.index, **s.stats()}
            atomic_write_text(out / f"{stem}.json", json.dumps(sidecar, indent=2) + "\n")
            if plot:
                from composer.plot import plot_piano_roll

                plot_piano_roll(s.score, out / f"{stem}.png", title=stem)
        except OSError as e:
            raise ComposerError(f"{mid}: cannot write ({e.strerror or e})") from None
        written.append(mid)
    return written
