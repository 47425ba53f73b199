"""Device and numeric-precision selection shared by training, generation and the benchmarks.

``resolve_device("auto")`` picks the best accelerator present (CUDA, then Apple MPS, then the CPU).
Mixed precision is used only on CUDA: float16 autocast with a ``GradScaler`` (``amp_dtype`` says why not
bfloat16). On the CPU and MPS everything stays float32.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from composer.errors import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """Turn ``auto|cpu|cuda|mps`` (or ``cuda:N``) into a ``torch.device``, failing clearly if absent.

    ``local_rank`` (set under torchrun) selects the GPU of this process when the name is ``auto``/``cuda``.
    """
    base = name.split(":", 1)[0]
    if base not in DEVICE_CHOICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
    if base == "auto":
        if torch.cuda.is_available():
            base = "cuda"
        elif mps_available():
            base = "mps"
        else:
            base = "cpu"
    if base == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                "device 'cuda' was requested but no CUDA GPU is available (use --device auto/cpu)"
            )
        if ":" in name:
            if local_rank is not None:
                raise ConfigError(
                    f"device {name!r}: under torchrun each process takes its own GPU (LOCAL_RANK); "
                    "use --device cuda or auto"
                )
            return torch.device(name)
        return torch.device("cuda", local_rank if local_rank is not None else torch.cuda.current_device())
    if base == "mps":
        if not mps_available():
            raise ConfigError(
                "device 'mps' was requested but Apple MPS is not available (use --device auto/cpu)"
            )
        return torch.device("mps")
    return torch.device("cpu")


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype for ``device``: float16 on CUDA, ``None`` (plain float32) elsewhere.

    Not bfloat16, even where the GPU has it: under autocast, cuDNN's RNN runs in float16 whatever dtype
    autocast was given (``aten/src/ATen/cudnn/AutocastRNN.cpp`` casts input, state and weights to half).
    A "bf16" run would put the LSTM, most of the model, in float16 without loss scaling, and its small
    gradients would flush to zero. float16 with a ``GradScaler`` is what the kernels really do, scaled.
    """
    if not enabled or device.type != "cuda":
        return None
    return torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[object]:
    """An autocast context for ``dtype``, or a no-op context when ``dtype`` is ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def make_grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """A loss scaler for float16 autocast (bfloat16 has float32's exponent range and needs none)."""
    if dtype is torch.float16:
        return torch.amp.GradScaler(device.type)
    return None


def auto_threads() -> int:
    """CPU threads for training when none are asked for: one per four cores, between 1 and 8.

    An LSTM step is many small matrix products; extra intra-op threads buy little and, when another
    process competes for the cores, can make a step many times slower (README: ``--threads``).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores // 4))


def set_threads(num_threads: int) -> int:
    """Set torch's intra-op CPU threads (0: ``auto_threads()``); return the number in use."""
    n = num_threads or auto_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels (for honest timings)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@contextlib.contextmanager
def out_of_memory_as(message: str) -> Iterator[None]:
    """Re-raise an accelerator's out-of-memory error as a ``ComposerError`` carrying ``message``.

    CUDA raises ``torch.OutOfMemoryError``; Apple's MPS a ``RuntimeError`` saying "MPS backend out of
    memory".
    """
    from composer.errors import ComposerError

    try:
        yield
    except torch.OutOfMemoryError as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise ComposerError(message) from exc
    except RuntimeError as exc:
        if "MPS backend out of memory" not in str(exc):
            raise
        raise ComposerError(message) from exc


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
