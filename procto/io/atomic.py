"""Atomic output files: write to a temp file in the destination folder, rename over the target when complete.

The one atomic writer of procto (:func:`atomic_output`, with :func:`write_text_atomic`, :func:`write_csv` and
:func:`save_torch` on top) and the one up-front output check (:func:`check_output`): a command checks its output
path before it reads or computes anything, so a bad output path is one :class:`~procto.errors.OutputError` and
nothing is created.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from procto.errors import OutputError

__all__ = ["atomic_output", "write_text_atomic", "write_csv", "save_torch", "check_output"]


def _first_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output(path: str | Path, *, kind: str = "file", suffixes: Sequence[str] | None = None) -> Path:
    """Check, without creating anything, that ``path`` can be written as a ``kind`` (``"file"`` or ``"folder"``).

    ``suffixes``: for files, the endings procto can write there (e.g. ``(".nii.gz", ".nrrd")``); another ending is
    refused.  Raises :class:`OutputError` with one line; returns ``Path(path)``.
    """
    path = Path(path)
    name = path.name.lower()
    if kind == "file":
        if path.is_dir():
            raise OutputError("is a folder; give a file name", path)
        if suffixes is not None and not any(name.endswith(s) for s in suffixes):
            raise OutputError(f"cannot write this format; use a name ending in {', '.join(suffixes)}", path)
    elif path.exists() and not path.is_dir():
        raise OutputError("exists and is not a folder", path)
    base = _first_existing(path.parent if kind == "file" else path)
    if not base.is_dir():
        raise OutputError(f"cannot create it: {base} is not a folder", path)
    if not os.access(base, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {base} (permission denied or read-only)", path)
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on normal exit it is renamed to ``path``, on error it is removed.

    ``suffix`` is kept at the end of the temp name so that writers which infer the format from the extension work.
    A failed or interrupted write therefore never leaves a half-written ``path`` (an older file there stays intact).
    A folder that cannot be created or written is one :class:`OutputError`.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError("is a folder; give a file name", path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"cannot write here ({exc.strerror or exc})", path) from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp creates 0600; give the output the permissions a plain open() would
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def _cell(value: Any, float_format: str | None) -> Any:
    if float_format is not None and isinstance(value, float):
        return format(value, float_format)
    return value


def write_csv(path: str | Path, rows: Iterable[Mapping[str, Any]], fieldnames: Sequence[str] | None = None, *,
              float_format: str | None = None) -> Path:
    """Write ``rows`` (dicts) as CSV atomically; columns ``fieldnames`` (default: the first row's keys, then any new
    keys of later rows in order of appearance); missing cells are empty.  ``float_format`` (e.g. ``".6f"``) formats
    float cells."""
    rows = list(rows)
    if fieldnames is None:
        names: dict[str, None] = {}
        for r in rows:
            names.update(dict.fromkeys(r))
        fieldnames = list(names)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(v, float_format) for k, v in r.items()})
    write_text_atomic(path, buf.getvalue())
    return Path(path)


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically (a crash never leaves a half-written checkpoint)."""
    import torch

    with atomic_output(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)
    return Path(path)
