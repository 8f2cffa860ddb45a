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
