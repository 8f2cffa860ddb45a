"""Shared fixtures: paths to the real sample data in ../shared/data/real (tests skip when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")

REAL_DATA = Path(os.environ.get("PROCTO_REAL_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real sample data not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture()
def single_thread():
    """One intra-op torch thread for the test (restored afterwards): multi-threaded oneDNN convolution backward sums
    in a varying order (results differ in the last bits), and one thread is also the fastest on a shared 2-core CI
    machine."""
    from procto.util import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory):
    """A procto home with the demo's bundles of every task (RCSegNeXt, staging, CoSAM) on the "smoke" schedule — valid
    bundles, a few iterations each, nothing learned — trained once per session (≈ 1–2 min on 2 cores): ``(home,
    {task: installed name})``.  The home is passed explicitly; ``$PROCTO_HOME`` is not touched."""
    from procto.demo import train_demo_bundles

    home = tmp_path_factory.mktemp("demo_home")
    names = train_demo_bundles(home, schedule="smoke", seed=0, device="cpu", threads=1)
    return home, names
