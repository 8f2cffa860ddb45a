"""Running RCSegNeXt through nnU-Net v2 from Python: planning/preprocessing, training, prediction, cross-validation.

These are what ``procto train rcsegnext``, ``procto predict rcsegnext`` and ``procto cv rcsegnext`` call.

>>> from procto.train.nnunet import train, predict          # doctest: +SKIP
>>> run = train("raw/Dataset501_ProctoPhantomMRI", fold=0, out="runs", epochs=5, iters=50, device="cpu")
>>> predict(run.model_dir, "new_case.nii.gz", "new_case_seg.nii.gz", folds=[0])

nnU-Net's folders: ``nnUNet_raw`` is the parent of the raw data set folder; ``nnUNet_preprocessed`` and
``nnUNet_results`` are ``<out>/nnUNet_preprocessed`` and ``<out>/nnUNet_results`` (or, without ``out``, the user's own
environment variables).  They are set for the duration of a call only.

Predictions are written in the input's geometry (shape, spacing, origin and direction of the input image): nnU-Net's
predictor resamples to the plans' spacing and back; ``resize_to`` adds the paper's Dataset B protocol on top (resize
the image to a given shape, predict, resample the class probabilities back to the original grid, arg-max).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from procto.errors import InputError
from procto.io import Volume, image_suffix, read_image, read_label, strip_image_suffix, write_image
from procto.io.image import WRITE_SUFFIXES

# nnU-Net spawns this many processes for exports/validation (default 8); read when nnunetv2 is first imported.
os.environ.setdefault("nnUNet_def_n_proc", str(max(1, min(8, os.cpu_count() or 1))))

CONFIGURATION = "3d_fullres"
PLANS = "nnUNetPlans"
DATASET_RE = re.compile(r"^Dataset(\d{3})_[A-Za-z0-9_\-.]+$")
#: nnU-Net's channel suffix of single-channel images (``case_0000.nii.gz``).
CHANNEL_SUFFIX = "_0000"
DEFAULT_LABELS = {1: "rectum", 2: "tumour"}
CV_METRICS = ("dice", "hd95", "asd")


# ------------------------------------------------------------------------------------------------- data set & env
@dataclass
class NNUNetFolders:
    raw: Path
    preprocessed: Path
    results: Path


def dataset_id_and_name(data: str | Path) -> tuple[int, str]:
    """Check that ``data`` is an nnU-Net v2 raw data set folder (``DatasetXXX_Name`` with ``dataset.json``,
    ``imagesTr``, ``labelsTr``); return its id and name."""
    data = Path(data)
    if not data.is_dir():
        raise InputError("not a folder (expected an nnU-Net raw data set folder DatasetXXX_Name)", data)
    m = DATASET_RE.match(data.name)
    if not m:
        raise InputError("folder name must look like DatasetXXX_Name (nnU-Net v2 raw data set)", data)
    for part in ("dataset.json", "imagesTr", "labelsTr"):
        if not (data / part).exists():
            raise InputError(f"no {part} in this nnU-Net raw data set", data)
    try:
        ds = json.loads((data / "dataset.json").read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"dataset.json is not valid JSON ({exc})", data / "dataset.json") from None
    channels = ds.get("channel_names") or ds.get("modality") or {}
    if len(channels) != 1:
        raise InputError(f"RCSegNeXt takes one input channel (T2); dataset.json lists {len(channels)}",
                         data / "dataset.json")
    return int(m.group(1)), data.name


def dataset_labels(dataset_json: str | Path) -> dict[int, str]:
    """Foreground labels of an nnU-Net ``dataset.json`` as ``{value: name}`` (default rectum/tumour)."""
    try:
        labels = json.loads(Path(dataset_json).read_text()).get("labels", {})
        out = {int(v): str(k) for k, v in labels.items() if isinstance(v, int) and int(v) != 0}
    except (OSError, ValueError, TypeError):
        out = {}
    return out or dict(DEFAULT_LABELS)


def resolve_folders(data: str | Path, out: str | Path | None) -> NNUNetFolders:
    """nnU-Net's three folders for training on ``data`` (see the module docstring)."""
    data = Path(data).resolve()
    if out is not None:
        out = Path(out).resolve()
        return NNUNetFolders(data.parent, out / "nnUNet_preprocessed", out / "nnUNet_results")
    pre, res = os.environ.get("nnUNet_preprocessed"), os.environ.get("nnUNet_results")
    if not pre or not res:
        raise InputError("give --out, or set the nnUNet_preprocessed and nnUNet_results environment variables")
    return NNUNetFolders(data.parent, Path(pre), Path(res))


@contextlib.contextmanager
def nnunet_environment(folders: NNUNetFolders | None = None, **extra: str | int | float | None) -> Iterator[None]:
    """Set nnU-Net's folder variables, procto's trainer search path and ``extra`` variables (None = unset) for the
    duration of the block; restore the previous environment afterwards."""
    from procto.train.nnunet_rcsegnext import register_trainer_path

    updates: dict[str, str | None] = {}
    if folders is not None:
        for key, value in (("nnUNet_raw", folders.raw), ("nnUNet_preprocessed", folders.preprocessed),
                           ("nnUNet_results", folders.results)):
            Path(value).mkdir(parents=True, exist_ok=True)
            updates[key] = str(value)
    for key, value in extra.items():
        updates[key] = None if value is None else str(value)
    tmp_env = dict(os.environ)
    register_trainer_path(tmp_env)
    updates["nnUNet_extTrainer"] = tmp_env["nnUNet_extTrainer"]
    saved = {k: os.environ.get(k) for k in updates}
    try:
        _set_environ(updates)
        yield
    finally:
        _set_environ(saved)


def _set_environ(values: dict[str, str | None]) -> None:
    """Set each variable to its value; None unsets it."""
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _default_processes() -> int:
    return max(1, min(4, os.cpu_count() or 1))


# ------------------------------------------------------------------------------------------------- preprocessing
def preprocessed_ready(folders: NNUNetFolders, dataset_name: str) -> bool:
    """Whether nnU-Net's plans and 3d_fullres preprocessed data exist for every training case."""
    base = folders.preprocessed / dataset_name
    plans_file = base / f"{PLANS}.json"
    if not plans_file.is_file() or not (base / "dataset_fingerprint.json").is_file():
        return False
    try:
        plans = json.loads(plans_file.read_text())
        ident = plans["configurations"][CONFIGURATION]["data_identifier"]
    except (OSError, ValueError, KeyError):
        return False
    folder = base / ident
    if not folder.is_dir():
        return False
    n_cases = len([p for p in (folders.raw / dataset_name / "labelsTr").iterdir() if image_suffix(p)])
    have = {p.name.split(".")[0] for p in folder.iterdir() if p.name.endswith((".pkl",))}
    return len(have) >= n_cases


def plan_and_preprocess(dataset_id: int, dataset_name: str, folders: NNUNetFolders, num_processes: int | None = None,
                        verbose: bool = False, check_integrity: bool = True) -> None:
    """nnU-Net's fingerprint extraction (with its data set integrity check unless ``check_integrity`` is False),
    experiment planning and 3d_fullres preprocessing, unless already done.  Must run inside
    :func:`nnunet_environment`."""
    if preprocessed_ready(folders, dataset_name):
        return
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    n = num_processes or _default_processes()
    try:
        extract_fingerprints([dataset_id], num_processes=n, check_dataset_integrity=check_integrity, clean=True,
                             verbose=verbose, show_progress_bar=False)
    except (AssertionError, FileNotFoundError) as exc:  # nnU-Net's integrity check: one readable message each
        first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        raise InputError(f"nnU-Net rejected the data set: {first}", folders.raw / dataset_name) from None
    plan_experiments([dataset_id])
    preprocess([dataset_id], PLANS, configurations=(CONFIGURATION,), num_processes=(n,), verbose=verbose,
               show_progress_bar=False)


# ------------------------------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    model_dir: Path  # the trainer's results folder: plans.json, dataset.json, fold_X/
    fold_dir: Path
    checkpoint: Path
    trainer: str
    epochs: int
    resumed: bool


def trainer_name_for(model: str) -> str:
    from procto.train.nnunet_rcsegnext import TRAINER_NAMES

    if model not in TRAINER_NAMES:
        raise InputError(f"unknown RCSegNeXt model {model!r}; known: {', '.join(TRAINER_NAMES)}")
    return TRAINER_NAMES[model]


def model_dir_for(folders: NNUNetFolders, dataset_name: str, model: str = "rcsegnext_b") -> Path:
    return folders.results / dataset_name / f"{trainer_name_for(model)}__{PLANS}__{CONFIGURATION}"


def _training_env(epochs, iters, val_iters, patch, batch_size, workers, validate, save_every) -> dict:
    from procto.train.nnunet_rcsegnext import (
        ENV_BATCH, ENV_EPOCHS, ENV_ITERS, ENV_PATCH, ENV_SAVE_EVERY, ENV_SKIP_VALIDATION, ENV_VAL_ITERS, parse_patch,
    )

    env: dict[str, str | None] = {}
    for key, value in ((ENV_EPOCHS, epochs), (ENV_ITERS, iters), (ENV_VAL_ITERS, val_iters),
                       (ENV_BATCH, batch_size), (ENV_SAVE_EVERY, save_every)):
        if value is not None:
            if int(value) < 1:
                raise InputError(f"{key.lower().replace('procto_', '')} must be at least 1, got {value}")
            env[key] = str(int(value))
    p = parse_patch(patch) if patch is not None else None
    if p is not None:
        env[ENV_PATCH] = ",".join(map(str, p))
    if workers is not None:
        if int(workers) < 0:
            raise InputError(f"workers must be >= 0, got {workers}")
        env["nnUNet_n_proc_DA"] = str(int(workers))
    env[ENV_SKIP_VALIDATION] = None if validate else "1"
    return env


def _device(device: str | None):
    import torch

    name = (device or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda", "mps"):
        raise InputError(f"device must be cpu, cuda, mps or auto, got {device!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda requested but no CUDA GPU is available (use --device cpu)")
    return torch.device(name)


def train(
    data: str | Path,
    fold: int | str = 0,
    *,
    model: str = "rcsegnext_b",
    out: str | Path | None = None,
    epochs: int | None = None,
    iters: int | None = None,
    val_iters: int | None = None,
    patch: str | Sequence[int] | None = None,
    batch_size: int | None = None,
    device: str | None = "auto",
    workers: int | None = None,
    preprocess_processes: int | None = None,
    check_integrity: bool = True,
    resume: bool = True,
    validate: bool = True,
    save_every: int | None = None,
    on_epoch: Callable[[int, int, dict], None] | None = None,
) -> TrainResult:
    """Plan and preprocess ``data`` (an nnU-Net raw data set folder) if needed, then train ``model`` on ``fold`` with
    procto's nnU-Net trainer (paper settings unless overridden; see :mod:`procto.train.nnunet_rcsegnext`).

    ``resume`` continues from the fold's last checkpoint (nnU-Net's ``--c``); a finished fold is not retrained.
    ``workers`` is nnU-Net's number of data augmentation processes (``nnUNet_n_proc_DA``; 0 = in the main process).
    ``check_integrity=False`` skips nnU-Net's data set integrity check (for data sets procto wrote itself).
    ``validate`` runs nnU-Net's final prediction of the fold's validation cases (``fold_X/validation``).
    ``on_epoch(epoch, num_epochs, values)`` is called after every epoch (values: train/val loss, pseudo Dice).
    """
    import torch

    import procto.train.nnunet_rcsegnext as trainers

    dataset_id, dataset_name = dataset_id_and_name(data)
    folders = resolve_folders(data, out)
    trainer_name = trainer_name_for(model)
    if str(fold) != "all":
        try:
            fold = int(fold)
        except ValueError:
            raise InputError(f"fold must be an integer or 'all', got {fold!r}") from None
        if fold < 0:
            raise InputError(f"fold must be >= 0, got {fold}")
    dev = _device(device)
    env = _training_env(epochs, iters, val_iters, patch, batch_size, workers, validate, save_every)
    model_dir = model_dir_for(folders, dataset_name, model)
    fold_dir = model_dir / f"fold_{fold}"

    with nnunet_environment(folders, **env):
        # nnU-Net's planner sets torch's thread count to nnUNet_n_proc_DA while it sizes the network, which fails
        # for 0 (augmentation in the main process): plan with at least 1
        with nnunet_environment(nnUNet_n_proc_DA=max(1, int(os.environ.get("nnUNet_n_proc_DA") or 1))):
            plan_and_preprocess(dataset_id, dataset_name, folders, preprocess_processes,
                                check_integrity=check_integrity)
        from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint

        final = fold_dir / "checkpoint_final.pth"
        has_checkpoint = any((fold_dir / c).is_file() for c in
                             ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth"))
        resumed = bool(resume and has_checkpoint)
        trainer = get_trainer_from_args(dataset_name, CONFIGURATION, fold, trainer_name, PLANS, resumed, device=dev)
        if resumed:
            maybe_load_checkpoint(trainer, True, False, None)
        done = final.is_file() and resumed and trainer.current_epoch >= trainer.num_epochs
        if on_epoch is not None:
            def callback(t):
                values = {}
                for key in ("train_losses", "val_losses", "ema_fg_dice", "dice_per_class_or_region"):
                    try:
                        values[key] = np.asarray(t.logger.get_value(key, step=-1), dtype=float).tolist()
                    except (KeyError, IndexError, TypeError, ValueError):
                        pass
                on_epoch(t.current_epoch, t.num_epochs, values)

            trainers.EPOCH_CALLBACK = callback
        try:
            if not done:
                if dev.type == "cuda":
                    torch.backends.cudnn.benchmark = True
                trainer.run_training()
            validation_done = (fold_dir / "validation" / "summary.json").is_file()
            if validate and (not done or not validation_done):
                trainer.perform_actual_validation(False)
        finally:
            trainers.EPOCH_CALLBACK = None
        epochs_run = int(trainer.num_epochs)
    return TrainResult(model_dir, fold_dir, final, trainer_name, epochs_run, resumed)


# ------------------------------------------------------------------------------------------------- prediction
def find_model_dir(model: str | Path) -> tuple[Path, list[int | str] | None]:
    """Resolve ``--model``: a trainer results folder (``…__nnUNetPlans__3d_fullres`` with ``plans.json``), one of its
    ``fold_X`` folders, or a folder holding exactly one such results folder (e.g. ``--out`` of training)."""
    path = Path(model)
    if not path.is_dir():
        raise InputError("no such model folder", path)
    if (path / "plans.json").is_file() and (path / "dataset.json").is_file():
        return path, None
    if path.name.startswith("fold_") and (path.parent / "plans.json").is_file():
        f = path.name[len("fold_"):]
        return path.parent, [f if f == "all" else int(f)]
    candidates = sorted({p.parent for p in path.glob("**/plans.json")
                         if (p.parent / "dataset.json").is_file() and any(p.parent.glob("fold_*"))})
    if len(candidates) == 1:
        return candidates[0], None
    if not candidates:
        raise InputError("not a trained nnU-Net model folder (no plans.json/dataset.json/fold_X found)", path)
    raise InputError(f"holds {len(candidates)} trained models; pass one of them: "
                     + ", ".join(str(c) for c in candidates[:3]), path)


def _checkpoint_for(model_dir: Path, folds: Sequence[int | str], checkpoint: str | None) -> str:
    names = [checkpoint] if checkpoint else ["checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth"]
    for name in names:
        if all((model_dir / f"fold_{f}" / name).is_file() for f in folds):
            return name
    raise InputError(f"no {' / '.join(names)} for fold(s) {', '.join(map(str, folds))}", model_dir)


class RCSegNeXtPredictor:
    """nnU-Net's sliding-window predictor (Gaussian weighting, mirroring TTA) for a trained RCSegNeXt model, working on
    :class:`procto.io.Volume` objects and returning label maps in the input's geometry."""

    def __init__(self, model: str | Path, folds: Sequence[int | str] | None = None, *, device: str | None = "auto",
                 mirror: bool = True, step_size: float = 0.5, checkpoint: str | None = None):
        model_dir, fold_from_path = find_model_dir(model)
        if folds is None:
            folds = fold_from_path
        if folds is None:
            folds = sorted(int(p.name[5:]) for p in model_dir.glob("fold_*") if p.name[5:].isdigit()
                           and any((p / c).is_file() for c in ("checkpoint_final.pth", "checkpoint_best.pth",
                                                                "checkpoint_latest.pth")))
            if not folds:
                raise InputError("no trained fold (fold_X/checkpoint_*.pth) in this model folder", model_dir)
        self.model_dir = model_dir
        self.folds = list(folds)
        self.device = _device(device)
        self.mirror = mirror
        self.step_size = step_size
        self.checkpoint = _checkpoint_for(model_dir, self.folds, checkpoint)
        self._predictor = None
        ds = json.loads((model_dir / "dataset.json").read_text())
        self.labels = dataset_labels(model_dir / "dataset.json")
        self.num_channels = len(ds.get("channel_names") or ds.get("modality") or {"0": ""})

    def _load(self):
        if self._predictor is None:
            from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

            with nnunet_environment():
                p = nnUNetPredictor(tile_step_size=self.step_size, use_gaussian=True, use_mirroring=self.mirror,
                                    perform_everything_on_device=self.device.type == "cuda", device=self.device,
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=False)
                p.initialize_from_trained_model_folder(str(self.model_dir), tuple(self.folds), self.checkpoint)
            self._predictor = p
        return self._predictor

    @property
    def network(self):
        return self._load().network

    def probabilities(self, volume: Volume) -> np.ndarray:
        """Class probabilities ``(C, z, y, x)`` on ``volume``'s grid."""
        if self.num_channels != 1:
            raise InputError(f"the model expects {self.num_channels} input channels; procto feeds one image")
        predictor = self._load()
        image = np.asarray(volume.array, dtype=np.float32)[None]
        with nnunet_environment():
            _, probs = predictor.predict_single_npy_array(image, {"spacing": [float(s) for s in volume.spacing]},
                                                          None, None, True)
        return np.asarray(probs, dtype=np.float32)

    def predict(self, volume: Volume, resize_to: Sequence[int] | None = None) -> Volume:
        """Label map of ``volume`` (uint8), in ``volume``'s geometry.  ``resize_to`` (z, y, x): resize the image to this
        shape before inference and the class probabilities back to the original grid (Dataset B protocol)."""
        from procto.io import resample

        if resize_to is not None:
            shape = tuple(int(s) for s in resize_to)
            if len(shape) != 3 or min(shape) < 1:
                raise InputError(f"--resize-to must be three positive integers, got {tuple(resize_to)}")
            small = resample(volume, shape=shape, interpolation="linear")
            probs = self.probabilities(small)
            back = [resample(small.with_array(p), shape=volume.shape, interpolation="linear").array for p in probs]
            seg = np.argmax(np.stack(back), axis=0)
        else:
            seg = np.argmax(self.probabilities(volume), axis=0)
        return Volume(seg.astype(np.uint8), volume.spacing, volume.origin, volume.direction.copy(),
                      {"description": "procto RCSegNeXt prediction"})


def _nnunet_style(folder: Path) -> bool:
    """Whether every image in ``folder`` carries nnU-Net's ``_0000`` channel suffix."""
    names = [strip_image_suffix(p) for p in folder.iterdir() if p.is_file() and image_suffix(p)]
    return bool(names) and all(n.endswith(CHANNEL_SUFFIX) for n in names)


def case_name(path: str | Path, strip_channel: bool = True) -> str:
    """Case name of an image file: file name without image suffix and (``strip_channel``) without nnU-Net's
    ``_0000`` channel suffix."""
    name = strip_image_suffix(path)
    return name[: -len(CHANNEL_SUFFIX)] if strip_channel and name.endswith(CHANNEL_SUFFIX) else name


def _output_suffix(src: Path) -> str:
    return image_suffix(src) if image_suffix(src) in WRITE_SUFFIXES else ".nii.gz"


def plan_outputs(inputs: str | Path, output: str | Path) -> list[tuple[Path, Path]]:
    """(input image, output label map) pairs for ``-i``/``-o``: a file to a file (or into a folder), or a folder of
    images to a folder.  Output names are the input names; nnU-Net's ``_0000`` channel suffix is dropped when every
    image of the input folder has it (``case_0000.nii.gz`` → ``case.nii.gz``, as nnU-Net names predictions)."""
    src, dst = Path(inputs), Path(output)
    if not src.exists():
        raise InputError("no such file or folder", src)
    if src.is_dir() and not any(p.is_file() and image_suffix(p) for p in src.iterdir()):
        # a DICOM series folder is one image; anything else is a folder of images
        if any(p.is_file() for p in src.iterdir()):
            return [(src, dst if image_suffix(dst) else dst / f"{src.name}.nii.gz")]
        raise InputError("no images in this folder", src)
    if image_suffix(dst) and image_suffix(dst) not in WRITE_SUFFIXES:
        raise InputError(f"cannot write this format; use one of {', '.join(WRITE_SUFFIXES)}", dst)
    if src.is_file():
        if image_suffix(dst):
            return [(src, dst)]
        return [(src, dst / f"{case_name(src, _nnunet_style(src.parent))}{_output_suffix(src)}")]
    if image_suffix(dst):
        raise InputError("input is a folder, so the output must be a folder too", dst)
    strip = _nnunet_style(src)
    pairs, seen = [], {}
    for p in sorted(src.iterdir()):
        if not (p.is_file() and image_suffix(p)) or p.name.startswith("."):
            continue
        name = case_name(p, strip)
        if name in seen:
            raise InputError(f"case {name!r} appears twice ({seen[name].name}, {p.name})", src)
        seen[name] = p
        pairs.append((p, dst / f"{name}{_output_suffix(p)}"))
    return pairs


def predict(
    model: str | Path,
    inputs: str | Path,
    output: str | Path,
    *,
    folds: Sequence[int | str] | None = None,
    resize_to: Sequence[int] | None = None,
    device: str | None = "auto",
    mirror: bool = True,
    step_size: float = 0.5,
    checkpoint: str | None = None,
    on_case: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Predict every image of ``inputs`` (a file or a folder) with a trained model; write label maps (atomically)
    in each input's geometry; return the written paths.  The model folder is checked first, each input is read and
    checked before the network loads (so bad input fails fast with one :class:`InputError`)."""
    pairs = plan_outputs(inputs, output)
    predictor = RCSegNeXtPredictor(model, folds, device=device, mirror=mirror, step_size=step_size,
                                   checkpoint=checkpoint)
    written: list[Path] = []
    for src, dst in pairs:
        volume = read_image(src)
        seg = predictor.predict(volume, resize_to)
        write_image(seg, dst)
        written.append(dst)
        if on_case is not None:
            on_case(dst)
    return written


# ------------------------------------------------------------------------------------------------- cross-validation
@dataclass
class CVResult:
    rows: list[dict]  # one per case: fold, case, <label>_<metric>
    table: dict  # procto.metrics.fold_table over the rows
    folds: list[int]
    model_dir: Path
    labels: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_LABELS))


def evaluate_validation(fold_dir: Path, labels_dir: Path, fold: int, labels: dict[int, str],
                        tolerance_mm: float = 4.0) -> list[dict]:
    """Per-case metrics of nnU-Net's validation predictions of one fold (``fold_X/validation``) against the raw
    reference label maps."""
    from procto.io import check_same_geometry
    from procto.metrics import evaluate_labels

    val_dir = fold_dir / "validation"
    preds = sorted(p for p in val_dir.iterdir() if p.is_file() and image_suffix(p)) if val_dir.is_dir() else []
    if not preds:
        raise InputError("no validation predictions (run the fold's training with validation)", val_dir)
    rows = []
    for p in preds:
        name = strip_image_suffix(p)
        refs = [r for r in labels_dir.iterdir() if strip_image_suffix(r) == name and image_suffix(r)]
        if not refs:
            raise InputError(f"no reference label map for case {name!r}", labels_dir)
        ref = read_label(refs[0])
        pred = read_label(p)
        try:
            check_same_geometry(ref, pred, names=("reference", "prediction"))
        except InputError as exc:
            raise InputError(exc.problem, p) from None
        res = evaluate_labels(pred.array, ref.array, ref.spacing, labels=labels, tolerance_mm=tolerance_mm)
        row = {"fold": fold, "case": name}
        for lab_name, values in res.items():
            for metric in CV_METRICS:
                row[f"{lab_name}_{metric}"] = float(values[metric])
        rows.append(row)
    return rows


def cross_validate(
    data: str | Path,
    folds: Iterable[int] = (0, 1, 2, 3, 4),
    *,
    model: str = "rcsegnext_b",
    out: str | Path | None = None,
    labels: dict[int, str] | None = None,
    on_fold: Callable[[int, str], None] | None = None,
    **train_kwargs,
) -> CVResult:
    """Train (or reuse) each fold, evaluate its validation predictions, and build the paper's per-fold table
    (Dice, HD95, ASD per class; mean ± sd across folds)."""
    from procto.metrics import fold_table

    data = Path(data)
    dataset_id_and_name(data)
    if labels is None:
        labels = dataset_labels(data / "dataset.json")
    folds = [int(f) for f in folds]
    if not folds:
        raise InputError("no folds given")
    rows: list[dict] = []
    model_dir = None
    for f in folds:
        if on_fold is not None:
            on_fold(f, "train")
        run = train(data, f, model=model, out=out, validate=True, **train_kwargs)
        model_dir = run.model_dir
        if on_fold is not None:
            on_fold(f, "evaluate")
        rows.extend(evaluate_validation(run.fold_dir, data / "labelsTr", f, labels))
    metrics = [f"{name}_{m}" for name in labels.values() for m in CV_METRICS]
    table = fold_table(rows, metrics)
    return CVResult(rows, table, folds, model_dir, labels)


def write_cv_csv(result: CVResult, path: str | Path) -> None:
    """Per-fold means (and the across-fold mean and sd) of every metric, one row per fold."""
    import csv

    from procto.io import atomic_output

    metrics = [f"{name}_{m}" for name in result.labels.values() for m in CV_METRICS]
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["fold", "n_cases", *metrics])
        for key, cells in result.table.items():
            if key in result.folds:
                w.writerow([key, cells[metrics[0]].n, *(f"{cells[m].mean:.6f}" for m in metrics)])
        across = [k for k in result.table if k not in result.folds][0]
        n_cases = len(result.rows)  # mean and sd are across the folds' means, as in the paper
        w.writerow(["mean", n_cases, *(f"{result.table[across][m].mean:.6f}" for m in metrics)])
        w.writerow(["sd", n_cases, *(f"{result.table[across][m].sd:.6f}" for m in metrics)])


def write_cases_csv(result: CVResult, path: str | Path) -> None:
    import csv

    from procto.io import atomic_output

    cols = list(result.rows[0]) if result.rows else ["fold", "case"]
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in result.rows:
            w.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()})


__all__ = [
    "NNUNetFolders",
    "TrainResult",
    "CVResult",
    "RCSegNeXtPredictor",
    "dataset_id_and_name",
    "resolve_folders",
    "nnunet_environment",
    "plan_and_preprocess",
    "train",
    "predict",
    "find_model_dir",
    "plan_outputs",
    "cross_validate",
    "evaluate_validation",
    "write_cv_csv",
    "write_cases_csv",
]
