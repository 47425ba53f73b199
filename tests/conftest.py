import os
import sys
from pathlib import Path

import pytest

# tests import the in-memory fixture builders as `from tests.midi_factory import ...`
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# one intra-op thread: with two cores shared, two threads can run many times slower
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _torch_single_thread():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    torch.set_num_threads(1)
    yield
