"""Installed bundles and the extraction cache under ``$PROCTO_HOME`` (default ``~/.procto``):
``bundles/<name>/`` (``procto bundle install``) and ``cache/<sha256 of the file>/`` (a ``.procto`` file used directly).
Each is extracted once, into a temporary folder beside it that is renamed into place when everything checked out —
so a failed install leaves nothing behind — and checked again (sha256 of every file, ``weights_only`` load of every
weight file) each time it is opened."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from procto.bundle.archive import extract_bundle, extract_nnunet, nnunet_root, open_zip, read_manifest, \
    verify_folder, zip_members
from procto.bundle.manifest import MANIFEST, SUFFIX, TASKS, check_manifest, check_name, default_name, \
    nnunet_manifest, sha256_file, valid_name
from procto.errors import InputError, OutputError

__all__ = ["Bundle", "procto_home", "bundles_dir", "install_bundle", "list_bundles", "open_bundle",
           "resolve_model"]

def procto_home(home: str | Path | None = None) -> Path:
    """procto's user folder: ``home``, else ``$PROCTO_HOME``, else ``~/.procto``."""
    if home is not None:
        return Path(home).expanduser()
    return Path(os.environ.get("PROCTO_HOME") or "~/.procto").expanduser()


def bundles_dir(home: str | Path | None = None) -> Path:
    """The folder of installed bundles, ``<home>/bundles``."""
    return procto_home(home) / "bundles"


@dataclass(frozen=True)
class Bundle:
    """An opened (verified, extracted) bundle: its ``root`` folder, ``manifest`` and ``name`` (the installed name, or
    the manifest's for a bundle file)."""

    root: Path
    manifest: dict
    name: str = ""

    @property
    def task(self) -> str:
        """``rcsegnext``, ``agcrc``, ``usam``, ``staging`` or ``cosam``."""
        return str(self.manifest["task"])

    @property
    def architecture(self) -> str | None:
        return self.manifest.get("architecture")

    @property
    def model_path(self) -> Path:
        """What the task's predictor (and its ``--model`` option) takes: a ``model.pt`` or an nnU-Net model folder."""
        return self.root / self.manifest["model_path"]


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            return


@contextlib.contextmanager
def _new_folder(dest: Path, *, replace: bool = False, exist_ok: bool = False) -> Iterator[Path]:
    """An empty temporary folder beside ``dest``, renamed to ``dest`` when the block succeeds (an existing ``dest``
    is replaced when ``replace``, kept when ``exist_ok``); on error it is removed with every folder this call
    created."""
    missing, p = [], dest.parent
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    except OSError as exc:
        _remove_empty(missing)
        raise OutputError(f"cannot write here ({exc.strerror or exc})", dest.parent) from None
    try:
        yield tmp
        if dest.exists() and replace:
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / "x")
            try:
                os.rename(tmp, dest)
            except OSError:
                os.replace(old / "x", dest)  # keep the installed bundle
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
        else:
            try:
                os.rename(tmp, dest)
            except OSError:
                if not (exist_ok and dest.exists()):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process extracted the same file meanwhile
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(missing)
        raise


def _check_task(manifest: dict, task: str | None, where: str | Path) -> None:
    if task is not None and manifest["task"] != task:
        arch = f" ({manifest.get('architecture')})" if manifest.get("architecture") else ""
        raise InputError(f"is a {manifest['task']}{arch} bundle, not {task}", where)


def _nnunet_zip(zf: zipfile.ZipFile, members: dict, folder: Path, where: Path, name: str,
                task: str | None) -> dict:
    """Extract an nnU-Net model zip into ``folder`` and write the manifest procto makes for it."""
    from procto.infer.nnunet import checkpoint_for, trained_folds

    root = nnunet_root(members, where)
    if root is None:
        raise InputError(f"not a procto bundle (no {MANIFEST}) nor an nnU-Net model zip", where)
    model_dir = extract_nnunet(zf, members, root, folder, where)
    try:
        folds = trained_folds(model_dir)
        manifest = nnunet_manifest(name, model_dir, folds, checkpoint_for(model_dir, folds), task)
    except InputError as exc:  # name the zip, not the temporary folder
        raise InputError(exc.problem, where) from None
    manifest["source"] = {"nnunet_zip": where.name}
    manifest["model_path"] = model_dir.relative_to(folder).as_posix()
    manifest["files"] = {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
                         for p in sorted(folder.rglob("*")) if p.is_file()}
    check_manifest(manifest, where)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _unpack(zf: zipfile.ZipFile, members: dict, manifest: dict | None, folder: Path, where: Path, name: str,
            task: str | None) -> dict:
    """Verify and extract a bundle (``manifest`` read already) or an nnU-Net model zip (``manifest`` None; ``task``
    names its task, None: from its trainer) into the empty ``folder``; returns the manifest."""
    if manifest is None:
        return _nnunet_zip(zf, members, folder, where, name, task)
    _check_task(manifest, task, where)
    extract_bundle(zf, members, manifest, folder, where)
    return manifest


def _peek(zf: zipfile.ZipFile, where: Path) -> tuple[dict, dict | None]:
    members = zip_members(zf, where)
    return members, (read_manifest(zf, members, where) if MANIFEST in members else None)


def install_bundle(file: str | Path, name: str | None = None, home: str | Path | None = None, *,
                   task: str | None = None, force: bool = False) -> Path:
    """Verify bundle ``file`` (or an nnU-Net model zip) and extract it to ``<home>/bundles/<name>``; returns that
    folder.  ``name``: default the bundle's own name (the file's name for nnU-Net zips).  ``task``: checked against
    a bundle; names the task of an nnU-Net zip whose trainer does not tell it.  ``force`` replaces an installed
    bundle of that name.  Any problem is one :class:`InputError` and nothing is written."""
    file = Path(file)
    if task is not None and task not in TASKS:
        raise InputError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    with open_zip(file) as zf:
        members, manifest = _peek(zf, file)
        own = (manifest or {}).get("name")
        name = check_name(name if name is not None else own if valid_name(own) else default_name(file), file)
        dest = bundles_dir(home) / name
        if dest.exists() and not force:
            raise InputError(f"a bundle named {name} is already installed ({dest}); pass --force to replace it or "
                             "--name to choose another name", file)
        if manifest is not None:
            _check_task(manifest, task, file)
        with _new_folder(dest, replace=force) as tmp:
            _unpack(zf, members, manifest, tmp, file, name, task)
    return dest


def _open_file(file: Path, task: str | None, home: str | Path | None) -> Bundle:
    """A bundle file, extracted once into ``<home>/cache/<sha256>``."""
    dest = procto_home(home) / "cache" / sha256_file(file)[:32]
    if (dest / MANIFEST).is_file():
        try:
            manifest = verify_folder(dest, where=file)
            return Bundle(dest, manifest, str(manifest.get("name") or ""))
        except InputError:
            shutil.rmtree(dest, ignore_errors=True)  # a damaged cache entry: extract the file again
    with open_zip(file) as zf:
        members, manifest = _peek(zf, file)
        if manifest is not None:
            _check_task(manifest, task, file)
        with _new_folder(dest, exist_ok=True) as tmp:
            _unpack(zf, members, manifest, tmp, file, default_name(file), None)
    manifest = verify_folder(dest, where=file)
    return Bundle(dest, manifest, str(manifest.get("name") or ""))


def open_bundle(path_or_name: str | Path, task: str | None = None, home: str | Path | None = None) -> Bundle:
    """A verified bundle: a ``.procto`` file (or an nnU-Net model zip; extracted once into ``<home>/cache``) or the
    name of an installed bundle.  ``task`` refuses a bundle of another task.  Every listed file's sha256 and every
    weight file's ``weights_only`` load are checked; any problem is one :class:`InputError`."""
    path = Path(path_or_name)
    if path.is_file():
        bundle = _open_file(path, task, home)
        where: str | Path = path
    else:
        text = str(path_or_name)
        root = bundles_dir(home) / text
        if not valid_name(text) or not (root / MANIFEST).is_file():
            if path.exists():
                raise InputError("not a bundle file or the name of an installed bundle", path)
            raise InputError(f"no such bundle file, and no bundle of that name is installed in {bundles_dir(home)} "
                             "(see `procto bundle list`)", text)
        bundle, where = Bundle(root, verify_folder(root), text), text
    _check_task(bundle.manifest, task, where)
    return bundle


def list_bundles(home: str | Path | None = None) -> list[dict[str, Any]]:
    """The installed bundles by name: ``name``, ``task``, ``architecture``, ``modality``, ``procto_version``,
    ``created``, ``path`` (and ``problem`` for a folder without a readable manifest).  Nothing is verified here."""
    folder = bundles_dir(home)
    rows: list[dict[str, Any]] = []
    if not folder.is_dir():
        return rows
    for d in sorted(folder.iterdir()):
        if d.name.startswith(".") or not d.is_dir():
            continue
        try:
            m = json.loads((d / MANIFEST).read_text())
            if not isinstance(m, dict):
                raise ValueError("not an object")
        except (OSError, ValueError):
            rows.append({"name": d.name, "task": None, "architecture": None, "modality": None,
                         "procto_version": None, "created": None, "path": str(d), "problem": f"no readable {MANIFEST}"})
            continue
        rows.append({"name": d.name, **{k: m.get(k) for k in ("task", "architecture", "modality", "procto_version",
                                                             "created")}, "path": str(d)})
    return rows


def resolve_model(value: str | Path, task: str, home: str | Path | None = None) -> Path:
    """What a ``--model`` option means: a ``.procto`` file or the name of an installed bundle → the verified,
    extracted model path of ``task`` (another task is one :class:`InputError`); anything else → ``Path(value)``
    unchanged (an existing file or folder wins over a bundle of the same name)."""
    path = Path(value)
    if str(value).lower().endswith(SUFFIX):
        if not path.is_file():
            raise InputError("no such bundle file", path)
        return open_bundle(path, task, home).model_path
    if path.exists() or not valid_name(str(value)) or not (bundles_dir(home) / str(value) / MANIFEST).is_file():
        return path
    return open_bundle(str(value), task, home).model_path
