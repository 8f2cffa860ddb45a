"""Bundle zips read and written safely: member names checked before anything is extracted (no absolute path, no
``..``, no link or special file, nothing the manifest does not list), every member's sha256 and size checked while it
is extracted, every weight file loaded with ``weights_only`` before anyone uses it; nnU-Net's own model zips
(``nnUNetv2_export_model_to_zip``) are read the same way, taking only the files a predictor needs."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import zipfile
import zlib
from pathlib import Path
from typing import Sequence, Union

from procto.bundle.manifest import MANIFEST, check_manifest, check_member_name, check_weights, sha256_file
from procto.errors import InputError

__all__ = ["WEIGHT_SUFFIXES", "open_zip", "zip_members", "read_manifest", "extract_bundle", "write_bundle",
           "verify_folder", "nnunet_root", "extract_nnunet"]

#: Members loaded as weights (checked with ``weights_only``); stored uncompressed in the zip.
WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt")
_MAX_MANIFEST = 16 << 20
_BLOCK = 1 << 20
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)
#: Files of an nnU-Net model folder that a predictor (or the manifest) uses, relative to the folder.
_NNUNET_KEEP = re.compile(r"^(plans\.json|dataset\.json|dataset_fingerprint\.json|"
                          r"fold_[A-Za-z0-9]+/(checkpoint_\w+\.pth|debug\.json|validation/summary\.json))$")

Source = Union[Path, bytes]


def open_zip(path: str | Path) -> zipfile.ZipFile:
    """``path`` opened as a zip; a missing, truncated or non-zip file is one :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such bundle file", path)
    try:
        return zipfile.ZipFile(path)
    except _ZIP_ERRORS + (ValueError,) as exc:
        raise InputError(f"not a readable zip file (truncated or corrupt: {exc})", path) from None


def zip_members(zf: zipfile.ZipFile, where: str | Path) -> dict[str, zipfile.ZipInfo]:
    """The regular file members of ``zf`` by name; an unsafe name, a symbolic link, a special file or a duplicate
    name anywhere in the zip refuses the whole zip."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = info.filename
        check_member_name(name, where)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise InputError(f"refused: member {name!r} is a symbolic link", where)
        if info.is_dir():
            continue
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            raise InputError(f"refused: member {name!r} is not a regular file", where)
        if name in members:
            raise InputError(f"refused: member {name!r} appears twice", where)
        members[name] = info
    return members


def read_manifest(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], where: str | Path) -> dict:
    """The checked manifest of a bundle zip: it lists exactly the zip's members (none more, none less) with their
    sizes."""
    info = members.get(MANIFEST)
    if info is None:
        raise InputError(f"not a procto bundle (no {MANIFEST})", where)
    if info.file_size > _MAX_MANIFEST:
        raise InputError(f"{MANIFEST} is too large ({info.file_size} bytes)", where)
    try:
        manifest = json.loads(zf.read(info).decode("utf-8"))
    except _ZIP_ERRORS + (ValueError,) as exc:
        raise InputError(f"{MANIFEST} is not readable JSON ({exc})", where) from None
    files = check_manifest(manifest, where)["files"]
    for name in members:
        if name != MANIFEST and name not in files:
            raise InputError(f"refused: member {name!r} is not listed in {MANIFEST}", where)
    for name, entry in files.items():
        if name not in members:
            raise InputError(f"{name} is listed in {MANIFEST} but missing (truncated bundle?)", where)
        if members[name].file_size != entry["size"]:
            raise InputError(f"{name}: size {members[name].file_size} does not match {MANIFEST} ({entry['size']})",
                             where)
    return manifest


def _extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, where: str | Path) -> tuple[str, int]:
    """Stream one member to ``target`` (a new file); returns its sha256 and size."""
    h, size = hashlib.sha256(), 0
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zf.open(info) as src, open(target, "xb") as out:
            for block in iter(lambda: src.read(_BLOCK), b""):
                size += len(block)
                if size > info.file_size:
                    raise InputError(f"{info.filename}: more bytes than the zip says (corrupt)", where)
                h.update(block)
                out.write(block)
    except _ZIP_ERRORS as exc:
        raise InputError(f"{info.filename}: corrupt member ({exc})", where) from None
    return h.hexdigest(), size


def _check_all_weights(folder: Path, manifest: dict, where: str | Path) -> None:
    """Every weight file, and an engine model's checkpoint whatever its name, loads with ``weights_only``."""
    for name in manifest["files"]:
        if name.endswith(WEIGHT_SUFFIXES) or (name == manifest["model_path"] and manifest["framework"] == "procto"):
            try:
                check_weights(folder / name, manifest["framework"], manifest["task"], member=name)
            except InputError as exc:
                raise InputError(f"{name}: {exc.problem}", where) from None


def extract_bundle(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], manifest: dict, folder: Path,
                   where: str | Path) -> None:
    """Extract the listed members into the empty ``folder`` checking each sha256 as it streams, write the manifest,
    then check the weights.  The caller removes ``folder`` on error."""
    root = folder.resolve()
    for name, entry in manifest["files"].items():
        target = folder / name
        if not target.resolve().is_relative_to(root):
            raise InputError(f"refused: unsafe member path {name!r}", where)
        digest, size = _extract(zf, members[name], target, where)
        if digest != entry["sha256"] or size != entry["size"]:
            raise InputError(f"{name}: sha256 does not match {MANIFEST} (tampered or corrupt)", where)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    _check_all_weights(folder, manifest, where)


def verify_folder(folder: Path, where: str | Path | None = None) -> dict:
    """The manifest of an extracted bundle ``folder`` after checking every listed file (present, a regular file,
    size and sha256) and the weights."""
    where = where if where is not None else folder
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"no readable {MANIFEST} ({exc})", where) from None
    check_manifest(manifest, where)
    for name, entry in manifest["files"].items():
        path = folder / name
        if path.is_symlink() or not path.is_file():
            raise InputError(f"{name} is missing from the installed bundle", where)
        if path.stat().st_size != entry["size"] or sha256_file(path) != entry["sha256"]:
            raise InputError(f"{name}: sha256 does not match {MANIFEST} (changed since it was installed)", where)
    _check_all_weights(folder, manifest, where)
    return manifest


def write_bundle(out: Path, manifest: dict, members: Sequence[tuple[str, Source]]) -> dict:
    """Write the bundle zip ``out`` atomically: ``members`` (name, file or bytes) hashed as they are written, then
    ``manifest.json`` listing them.  Returns the manifest written."""
    from procto.io import atomic_output

    files: dict[str, dict] = {}
    with atomic_output(out, suffix=".procto") as tmp, zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
        for name, source in members:
            check_member_name(name, out)
            method = zipfile.ZIP_STORED if name.endswith(WEIGHT_SUFFIXES) else zipfile.ZIP_DEFLATED
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type, info.external_attr = method, (stat.S_IFREG | 0o644) << 16
            size = len(source) if isinstance(source, bytes) else source.stat().st_size
            h = hashlib.sha256()
            with zf.open(info, "w", force_zip64=size >= 1 << 31) as dst:
                if isinstance(source, bytes):
                    h.update(source)
                    dst.write(source)
                else:
                    with open(source, "rb") as src:
                        for block in iter(lambda: src.read(_BLOCK), b""):
                            h.update(block)
                            dst.write(block)
            files[name] = {"sha256": h.hexdigest(), "size": size}
        manifest = check_manifest({**manifest, "files": files}, out)
        zf.writestr(MANIFEST, json.dumps(manifest, indent=1) + "\n", compress_type=zipfile.ZIP_DEFLATED)
    return manifest


# ------------------------------------------------------------------------------------------------ nnU-Net zips
def nnunet_root(members: dict[str, zipfile.ZipInfo], where: str | Path) -> str | None:
    """The model folder (``<Dataset>/<Trainer>__<Plans>__<Configuration>/``) of an nnU-Net model zip; None when
    the zip has no such folder; several are one :class:`InputError`."""
    roots = sorted({n[: -len("plans.json")] for n in members if n.endswith("/plans.json")})
    roots = [r for r in roots if r.rstrip("/").split("/")[-1].count("__") == 2 and f"{r}dataset.json" in members
             and any(re.match(r"^fold_[A-Za-z0-9]+/checkpoint_\w+\.pth$", n[len(r):]) for n in members
                     if n.startswith(r))]
    if len(roots) > 1:
        raise InputError(f"holds {len(roots)} nnU-Net models ({', '.join(r.rstrip('/') for r in roots[:3])}); "
                         "export one configuration per zip", where)
    return roots[0] if roots else None


def extract_nnunet(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], root: str, folder: Path,
                   where: str | Path) -> Path:
    """Extract what a predictor needs of the nnU-Net model folder ``root`` into ``folder/model/<its name>/``, then
    check every checkpoint with ``weights_only``; returns the model folder."""
    model_dir = folder / "model" / root.rstrip("/").split("/")[-1]
    for name, info in members.items():
        rel = name[len(root):] if name.startswith(root) else None
        if rel is not None and _NNUNET_KEEP.match(rel):
            _extract(zf, info, model_dir / rel, where)
    for path in sorted(model_dir.glob("fold_*/*.pth")):
        rel = path.relative_to(folder).as_posix()
        try:
            check_weights(path, "nnunetv2", "", member=rel)
        except InputError as exc:
            raise InputError(f"{rel}: {exc.problem}", where) from None
    return model_dir
