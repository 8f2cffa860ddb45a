"""The CLI's one error boundary, verb by verb: an output path that cannot be written, or one whose suffix procto
cannot write, is one line ``error: …`` naming it, exit status 2, and nothing is created — checked before any input is
read, model loaded or folder made."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from procto.cli import app

runner = CliRunner()

# verb arguments with OUT where the output goes; inputs are dummies (the output is checked first)
FILE_OUTPUTS = {
    "evaluate": (["evaluate", "--pred", "{dummy}", "--ref", "{dummy}", "--out", "OUT"], ".csv", "eval.png"),
    "predict rcsegnext": (["predict", "rcsegnext", "--model", "{dummy}", "-i", "{dummy}", "-o", "OUT"], ".nii.gz",
                          "seg.png"),
    "predict usam": (["predict", "usam", "--model", "{dummy}", "-i", "{dummy}", "-o", "OUT"], ".nii.gz", "seg.png"),
    "predict staging": (["predict", "staging", "--model", "{dummy}", "-i", "{dummy}", "-o", "OUT"], ".json",
                        "stage.txt"),
    "predict agcrc": (["predict", "agcrc", "--model", "{dummy}", "--ct", "{dummy}", "--ts", "{dummy}", "--out", "OUT"],
                      ".nii.gz", "seg.png"),
    "predict cosam": (["predict", "cosam", "--model", "{dummy}", "--ct", "{dummy}", "--out", "OUT"], ".nii.gz",
                      "nodes.png"),
}
FOLDER_OUTPUTS = {
    "phantom": ["phantom", "--out", "OUT", "--n", "1"],
    "demo": ["demo", "--out", "OUT"],
    "train rcsegnext": ["train", "rcsegnext", "--data", "{dummy}", "--out", "OUT"],
    "cv rcsegnext": ["cv", "rcsegnext", "--data", "{dummy}", "--out", "OUT"],
    "train usam": ["train", "usam", "--data", "{dummy}", "--out", "OUT"],
    "train staging": ["train", "staging", "--data", "{dummy}", "--out", "OUT"],
    "cv staging": ["cv", "staging", "--data", "{dummy}", "--out", "OUT"],
    "prepare agcrc": ["prepare", "agcrc", "--msd", "{dummy}", "--ts", "{dummy}", "--out", "OUT"],
    "pretrain agcrc": ["pretrain", "agcrc", "--data", "{dummy}", "--out", "OUT"],
    "train agcrc": ["train", "agcrc", "--data", "{dummy}", "--out", "OUT"],
    "cv agcrc": ["cv", "agcrc", "--data", "{dummy}", "--out", "OUT"],
    "train cosam": ["train", "cosam", "--data", "{dummy}", "--out", "OUT"],
}


def _args(template: list[str], out: Path, dummy: Path) -> list[str]:
    return [str(out) if a == "OUT" else a.replace("{dummy}", str(dummy)) for a in template]


def _snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _check_one_line_error(result, out: Path) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:") and str(out) in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.fixture()
def blocker(tmp_path: Path) -> Path:
    """A regular file standing where an output folder would have to be created."""
    path = tmp_path / "not_a_folder"
    path.write_text("I am a file\n")
    return path


@pytest.mark.parametrize("verb", sorted(FILE_OUTPUTS))
def test_unwritable_output_file(verb: str, tmp_path: Path, blocker: Path) -> None:
    template, good_suffix, _ = FILE_OUTPUTS[verb]
    out = blocker / "sub" / f"result{good_suffix}"
    before = _snapshot(tmp_path)
    result = runner.invoke(app, _args(template, out, tmp_path / "missing_input"))
    _check_one_line_error(result, out)
    assert _snapshot(tmp_path) == before and blocker.read_text() == "I am a file\n"


@pytest.mark.parametrize("verb", sorted(FILE_OUTPUTS))
def test_output_suffix_procto_cannot_write(verb: str, tmp_path: Path) -> None:
    template, _, bad_name = FILE_OUTPUTS[verb]
    out = tmp_path / "new_folder" / bad_name
    before = _snapshot(tmp_path)
    result = runner.invoke(app, _args(template, out, tmp_path / "missing_input"))
    _check_one_line_error(result, out)
    assert _snapshot(tmp_path) == before  # neither the file nor a folder of that name, nor new_folder/


@pytest.mark.parametrize("verb", sorted(FOLDER_OUTPUTS))
def test_unwritable_output_folder(verb: str, tmp_path: Path, blocker: Path) -> None:
    out = blocker / "run"
    before = _snapshot(tmp_path)
    result = runner.invoke(app, _args(FOLDER_OUTPUTS[verb], out, tmp_path / "missing_input"))
    _check_one_line_error(result, out)
    assert _snapshot(tmp_path) == before and blocker.read_text() == "I am a file\n"


@pytest.mark.parametrize("verb", sorted(FOLDER_OUTPUTS))
def test_output_folder_that_is_a_file(verb: str, tmp_path: Path, blocker: Path) -> None:
    before = _snapshot(tmp_path)
    result = runner.invoke(app, _args(FOLDER_OUTPUTS[verb], blocker, tmp_path / "missing_input"))
    _check_one_line_error(result, blocker)
    assert _snapshot(tmp_path) == before and blocker.read_text() == "I am a file\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        out = ro / "eval.csv"
        result = runner.invoke(app, _args(FILE_OUTPUTS["evaluate"][0], out, tmp_path / "missing"))
        _check_one_line_error(result, out)
        assert not any(ro.iterdir())
    finally:
        ro.chmod(0o755)


def test_proc_is_not_writable(tmp_path: Path) -> None:
    """A folder below /proc cannot be created even by root: one line, exit 2."""
    if not Path("/proc/self").exists():
        pytest.skip("no /proc")
    out = Path("/proc/procto_cannot_exist/eval.csv")
    result = runner.invoke(app, _args(FILE_OUTPUTS["evaluate"][0], out, tmp_path / "missing"))
    assert result.exit_code == 2, result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1
