"""`procto demo` runs the main job end to end on the embedded default and prints the metrics table."""

from __future__ import annotations

import time
from pathlib import Path

from typer.testing import CliRunner

from procto.cli import app


def test_demo_runs_and_prints_table(tmp_path: Path) -> None:
    start = time.perf_counter()
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--n", "2"])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 0, result.output
    assert "rectum" in result.output and "tumour" in result.output and "Dice" in result.output
    assert elapsed < 120
    preds = sorted((tmp_path / "demo" / "predictions").glob("*.nii.gz"))
    assert len(preds) == 2
