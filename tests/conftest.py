"""Fixtures shared by the whole test suite."""

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")  # plots render off-screen in tests
# a fresh clip cache per test run: tests never read or fill ~/.cache/soundscape
os.environ.setdefault("SOUNDSCAPE_CACHE_DIR", tempfile.mkdtemp(prefix="soundscape-test-cache-"))
# tests that compare numbers exactly run in fp32 (subprocesses too); tests/test_runtime.py
# checks "auto" and the bf16 path against fp32 explicitly
os.environ.setdefault("SOUNDSCAPE_PRECISION", "fp32")

#: real recordings by outside people; the folder sits beside the checkout (see its README.md)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The `shared/data` folder of real recordings; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real recordings not available: {SHARED_DATA} is absent "
            "(the shared/data folder beside the checkout; a fresh clone does not have it)"
        )
    return SHARED_DATA


@pytest.fixture(scope="session")
def esc10(shared_data) -> Path:
    """The ESC-10 folder of `shared_data` (``labels.csv`` + ``audio/``); skips without it."""
    folder = shared_data / "esc10"
    if not (folder / "labels.csv").is_file():
        pytest.skip(f"ESC-10 not found at {folder}")
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread: tiny models gain nothing from more, and the CI machine is shared."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
