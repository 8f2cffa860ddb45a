"""Exceptions procto raises for bad input.  The CLI prints them as one line and exits with status 2."""

from __future__ import annotations

from pathlib import Path


class ProctoError(Exception):
    """Base class of procto's user-facing errors."""


class InputError(ProctoError, ValueError):
    """An input file or array is unusable (corrupt, wrong dimensionality, NaN, mismatched geometry, empty mask...)."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        super().__init__(problem if path is None else f"{path}: {problem}")


class OutputError(ProctoError, OSError):
    """An output cannot be written where asked (unwritable or missing folder, a file where a folder is needed, a
    format procto cannot write).  Raised before any work is done whenever it can be checked up front."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        ProctoError.__init__(self, problem if path is None else f"{path}: {problem}")

    def __str__(self) -> str:
        return self.problem if self.path is None else f"{self.path}: {self.problem}"
