"""Inference with any procto model trained through nnU-Net v2 (RCSegNeXt now): one predictor class, file-level
prediction, and the rules that pair input images with output label maps.

>>> from procto.infer.nnunet import NNUNetPredictor, predict          # doctest: +SKIP
>>> model_dir = "runs/nnUNet_results/Dataset501_X/nnUNetTrainerRCSegNeXt__nnUNetPlans__3d_fullres"
>>> seg = NNUNetPredictor(model_dir).predict([t2, adc])            # one Volume per channel (or one Volume)
>>> predict(model_dir, "imagesTs/", "predictions/")                  # nnU-Net style folder, any number of channels

A model folder is nnU-Net's results folder of a trainer (``plans.json``, ``dataset.json``, ``fold_X/checkpoint_*.pth``);
its ``dataset.json`` names the input channels (``channel_names``).  A case with N channels is N images of the same
geometry: a list of :class:`procto.io.Volume` for :class:`NNUNetPredictor`, or nnU-Net style files
``case_0000.nii.gz``, ``case_0001.nii.gz``, … for :func:`predict`/:func:`plan_outputs` (grouped into one case named
``case``; the count is checked against the model's channels before the network loads).

Predictions are written in the input's geometry (shape, spacing, origin and direction of the first channel): nnU-Net's
predictor resamples to the plans' spacing and back; ``resize_to`` adds the paper's Dataset B protocol on top (resize
the image to a given shape, predict, resample the class probabilities back to the original grid, arg-max).  What
nnU-Net prints while it loads and predicts goes to a log file or nowhere (:func:`procto.infer.nnunet_env.quiet_stdout`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np

from procto.errors import InputError, OutputError
from procto.infer.nnunet_env import nnunet_environment, quiet_stdout
from procto.io import Volume, check_output, image_suffix, read_image, strip_image_suffix, write_image
from procto.io.image import WRITE_SUFFIXES

#: nnU-Net's channel suffix of the first (or only) channel of a case (``case_0000.nii.gz``).
CHANNEL_SUFFIX = "_0000"
#: A file name (image suffix removed) with nnU-Net's channel suffix: case name and channel index.
CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
DEFAULT_LABELS = {1: "rectum", 2: "tumour"}
#: Checkpoint file names in the order a model folder's folds are searched.
CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth")


# ------------------------------------------------------------------------------------------------- model folder
def read_dataset_json(path: str | Path) -> dict:
    """A model's (or raw data set's) ``dataset.json``; a missing or broken file is one :class:`InputError`."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"dataset.json is not readable JSON ({exc})", path) from None


def dataset_labels(dataset_json: str | Path) -> dict[int, str]:
    """Foreground labels of an nnU-Net ``dataset.json`` as ``{value: name}`` (default rectum/tumour)."""
    try:
        labels = json.loads(Path(dataset_json).read_text()).get("labels", {})
        out = {int(v): str(k) for k, v in labels.items() if isinstance(v, int) and int(v) != 0}
    except (OSError, ValueError, TypeError, AttributeError):
        out = {}
    return out or dict(DEFAULT_LABELS)


def channel_names(dataset: dict) -> list[str]:
    """Input channel names of a ``dataset.json`` dict, in channel order (one unnamed channel when it lists none)."""
    channels = dataset.get("channel_names") or dataset.get("modality") or {"0": ""}
    try:
        return [str(channels[k]) for k in sorted(channels, key=int)]
    except (TypeError, ValueError):
        raise InputError(f"dataset.json channel_names must map 0, 1, … to names, got {channels!r}") from None


def find_model_dir(model: str | Path) -> tuple[Path, list[int | str] | None]:
    """Resolve ``--model``: a trainer results folder (``…__nnUNetPlans__3d_fullres`` with ``plans.json``), one of its
    ``fold_X`` folders (then only that fold), or a folder holding exactly one such results folder (e.g. ``--out`` of
    training).  Returns the results folder and the folds the path names (None: every trained fold)."""
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


def trained_folds(model_dir: Path) -> list[int | str]:
    """The folds of a model folder that hold a checkpoint: the numbered folds (an ensemble), else ``["all"]``."""
    trained = [p.name[len("fold_"):] for p in model_dir.glob("fold_*")
               if p.is_dir() and any((p / c).is_file() for c in CHECKPOINTS)]
    numbered = sorted(int(f) for f in trained if f.isdigit())
    if numbered:
        return list(numbered)
    if "all" in trained:
        return ["all"]
    raise InputError("no trained fold (fold_X/checkpoint_*.pth) in this model folder", model_dir)


def checkpoint_for(model_dir: Path, folds: Sequence[int | str], checkpoint: str | None = None) -> str:
    """The checkpoint file name that every fold in ``folds`` has (``checkpoint`` if given, else final/best/latest)."""
    names = [checkpoint] if checkpoint else list(CHECKPOINTS)
    for name in names:
        if all((model_dir / f"fold_{f}" / name).is_file() for f in folds):
            return name
    raise InputError(f"no {' / '.join(names)} for fold(s) {', '.join(map(str, folds))}", model_dir)


# ------------------------------------------------------------------------------------------------- predictor
def _initialize_procto_model(predictor, model_dir: Path, folds: Sequence[int | str], checkpoint: str) -> bool:
    """Set up nnU-Net's ``predictor`` for a model trained by one of procto's trainers, building the network through
    the registry (:func:`procto.nets.create_model`, from the ``procto_model`` the trainer wrote into the plans) instead
    of nnU-Net's trainer lookup, so that inference never imports :mod:`procto.train`.  False for other models (nnU-Net's
    own trainers): the caller then uses nnU-Net's ``initialize_from_trained_model_folder``."""
    import torch
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from procto.nets import create_model

    plans = PlansManager(json.loads((model_dir / "plans.json").read_text()))
    dataset = read_dataset_json(model_dir / "dataset.json")
    records = [torch.load(model_dir / f"fold_{f}" / checkpoint, map_location="cpu", weights_only=False) for f in folds]
    first = records[0]
    configuration = plans.get_configuration(first["init_args"]["configuration"])
    model = configuration.configuration.get("procto_model")
    if model is None:
        return False
    network = create_model(model, input_channels=determine_num_input_channels(plans, configuration, dataset),
                           num_classes=plans.get_label_manager(dataset).num_segmentation_heads,
                           spacing=[float(v) for v in configuration.spacing], deep_supervision=False,
                           **(configuration.configuration.get("procto_model_kwargs") or {}))
    network.load_state_dict(first["network_weights"])
    predictor.manual_initialization(network, plans, configuration, [r["network_weights"] for r in records], dataset,
                                    first["trainer_name"], first.get("inference_allowed_mirroring_axes"))
    return True


class NNUNetPredictor:
    """nnU-Net's sliding-window predictor (Gaussian weighting, mirroring TTA) for a procto model trained through
    nnU-Net (any of procto's trainers, any number of input channels), working on :class:`procto.io.Volume` objects
    and returning label maps in the input's geometry.

    ``folds``: None = the folds the model path names, else every trained fold (numbered folds, or ``all``).
    ``log``: file that receives nnU-Net's printed messages (default: discarded).
    """

    def __init__(self, model: str | Path, folds: Sequence[int | str] | None = None, *, device: str | None = "auto",
                 mirror: bool = True, step_size: float = 0.5, checkpoint: str | None = None,
                 log: str | Path | None = None):
        from procto.util import resolve_device

        model_dir, fold_from_path = find_model_dir(model)
        folds = folds if folds is not None else fold_from_path
        self.model_dir = model_dir
        self.folds = list(folds) if folds is not None else trained_folds(model_dir)
        self.device = resolve_device(device)
        self.mirror = mirror
        self.step_size = step_size
        self.log = log
        self.checkpoint = checkpoint_for(model_dir, self.folds, checkpoint)
        self._predictor = None
        dataset = read_dataset_json(model_dir / "dataset.json")
        self.labels = dataset_labels(model_dir / "dataset.json")
        self.channel_names = channel_names(dataset)
        self.num_channels = len(self.channel_names)

    def _load(self):
        if self._predictor is None:
            with nnunet_environment(), quiet_stdout(self.log):
                from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

                p = nnUNetPredictor(tile_step_size=self.step_size, use_gaussian=True, use_mirroring=self.mirror,
                                    perform_everything_on_device=self.device.type == "cuda", device=self.device,
                                    verbose=False, verbose_preprocessing=False, allow_tqdm=False)
                if not _initialize_procto_model(p, self.model_dir, self.folds, self.checkpoint):
                    p.initialize_from_trained_model_folder(str(self.model_dir), tuple(self.folds), self.checkpoint)
            self._predictor = p
        return self._predictor

    @property
    def network(self):
        return self._load().network

    def channels(self, image: Volume | Sequence[Volume]) -> list[Volume]:
        """``image`` as the model's list of channel volumes; the count and the geometry are checked."""
        from procto.io import check_same_geometry

        vols = [image] if isinstance(image, Volume) else list(image)
        if len(vols) != self.num_channels:
            raise InputError(f"the model expects {self.num_channels} input channel(s) "
                             f"({', '.join(self.channel_names)}), got {len(vols)}")
        for i, v in enumerate(vols[1:], start=1):
            check_same_geometry(vols[0], v, names=("channel 0", f"channel {i}"))
        return vols

    def probabilities(self, image: Volume | Sequence[Volume]) -> np.ndarray:
        """Class probabilities ``(C, z, y, x)`` on the grid of ``image`` (one volume, or one per channel)."""
        vols = self.channels(image)
        predictor = self._load()
        data = np.stack([np.asarray(v.array, dtype=np.float32) for v in vols])
        with nnunet_environment(), quiet_stdout(self.log):
            _, probs = predictor.predict_single_npy_array(data, {"spacing": [float(s) for s in vols[0].spacing]},
                                                          None, None, True)
        return np.asarray(probs, dtype=np.float32)

    def predict(self, image: Volume | Sequence[Volume], resize_to: Sequence[int] | None = None) -> Volume:
        """Label map (uint8) of ``image`` (one volume, or one per channel), in its geometry.  ``resize_to`` (z, y, x):
        resize the channels to this shape before inference and the class probabilities back to the original grid
        (Dataset B protocol)."""
        from procto.io import resample

        vols = self.channels(image)
        ref = vols[0]
        if resize_to is not None:
            shape = tuple(int(s) for s in resize_to)
            if len(shape) != 3 or min(shape) < 1:
                raise InputError(f"--resize-to must be three positive integers, got {tuple(resize_to)}")
            small = [resample(v, shape=shape, interpolation="linear") for v in vols]
            probs = self.probabilities(small[0] if len(small) == 1 else small)
            back = [resample(small[0].with_array(p), shape=ref.shape, interpolation="linear").array for p in probs]
            seg = np.argmax(np.stack(back), axis=0)
        else:
            seg = np.argmax(self.probabilities(ref if len(vols) == 1 else vols), axis=0)
        return Volume(seg.astype(np.uint8), ref.spacing, ref.origin, ref.direction.copy(),
                      {"description": f"procto nnU-Net prediction ({self.model_dir.name.split('__')[0]})"})


#: The name this predictor had when RCSegNeXt was the only nnU-Net model.
RCSegNeXtPredictor = NNUNetPredictor


# ------------------------------------------------------------------------------------------------- input/output pairs
class PlannedCase(NamedTuple):
    """One case to predict: its channel images (channel order) and the label map to write."""

    inputs: tuple[Path, ...]
    output: Path


def case_name(path: str | Path, strip_channel: bool = True) -> str:
    """Case name of an image file: file name without image suffix and (``strip_channel``) without nnU-Net's
    ``_XXXX`` channel suffix."""
    name = strip_image_suffix(path)
    m = CHANNEL_RE.match(name)
    return m.group("case") if strip_channel and m else name


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and image_suffix(p) and not p.name.startswith("."))


def _nnunet_groups(images: Sequence[Path], n_channels: int | None = None) -> dict[str, dict[int, Path]] | None:
    """``{case: {channel: path}}`` when the images are nnU-Net style (every name ends in ``_XXXX`` and every case has a
    ``_0000`` image), else None.  For a one-channel model only names that all end in ``_0000`` group (``a_0000``,
    ``a_0001`` are then two cases named as their files, as before multi-channel support)."""
    groups: dict[str, dict[int, Path]] = {}
    for p in images:
        m = CHANNEL_RE.match(strip_image_suffix(p))
        if not m:
            return None
        channels = groups.setdefault(m.group("case"), {})
        idx = int(m.group("channel"))
        if idx in channels:
            raise InputError(f"case {m.group('case')!r} has two images for channel {idx} ({channels[idx].name}, "
                             f"{p.name})", p.parent)
        channels[idx] = p
    if not groups or any(0 not in ch for ch in groups.values()):
        return None
    if n_channels == 1 and any(set(ch) != {0} for ch in groups.values()):
        return None
    return groups


def _case_paths(name: str, chans: dict[int, Path], channels: int | None, where: Path) -> list[Path]:
    """A case's channel images in channel order, checked: channels 0 … N-1 without a gap, N the model's count."""
    paths = [chans[k] for k in sorted(chans)]
    missing = sorted(set(range(max(chans) + 1)) - set(chans))
    if missing:
        raise InputError(f"case {name!r} has no image for channel(s) {', '.join(map(str, missing))} "
                         f"({', '.join(p.name for p in paths)})", where)
    if channels is not None and len(paths) != channels:
        listed = ", ".join(p.name for p in paths)
        want = f"{name}_0000 … {name}_{channels - 1:04d}" if channels > 1 else f"{name}_0000 (or one image)"
        raise InputError(f"case {name!r} has {len(paths)} channel image(s) ({listed}); the model expects {channels}: "
                         f"{want}", where)
    return paths


def _output_suffix(src: Path) -> str:
    return image_suffix(src) if image_suffix(src) in WRITE_SUFFIXES else ".nii.gz"


def _output_is_file(dst: Path) -> bool:
    """Whether ``-o`` names a file: an image suffix, or any other file-like ending (``.png``) unless it is a folder."""
    if image_suffix(dst):
        return True
    return not dst.is_dir() and re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]{0,5}", dst.suffix or "") is not None


def check_prediction_output(output: str | Path) -> bool:
    """Check up front (creating nothing) that ``-o`` can be written: a label map file with an image suffix procto
    writes, or a folder (a name without a file-like suffix).  Returns whether it is a file; raises
    :class:`OutputError`."""
    dst = Path(output)
    is_file = _output_is_file(dst)
    if is_file and not any(dst.name.lower().endswith(s) for s in WRITE_SUFFIXES):
        raise OutputError("cannot write a label map in this format; name a file ending in "
                          f"{', '.join(WRITE_SUFFIXES)} or a folder (a name without a suffix)", dst)
    check_output(dst, kind="file" if is_file else "folder")
    return is_file


def _cases_of_folder(src: Path, dst: Path, channels: int | None) -> list[PlannedCase]:
    images = _images(src)
    groups = _nnunet_groups(images, channels)
    if groups is None:  # one image per case, named as the file
        groups = {}
        for p in images:
            name = strip_image_suffix(p)
            if name in groups:
                raise InputError(f"case {name!r} appears twice ({groups[name][0].name}, {p.name})", src)
            groups[name] = {0: p}
    cases, outputs = [], {}
    for name, chans in groups.items():
        paths = _case_paths(name, chans, channels, src)
        out = dst / f"{name}{_output_suffix(paths[0])}"
        if out in outputs:
            raise InputError(f"case {name!r} appears twice ({outputs[out].name}, {paths[0].name})", src)
        outputs[out] = paths[0]
        cases.append(PlannedCase(tuple(paths), out))
    return cases


def _case_of_file(src: Path, dst: Path, dst_is_file: bool, channels: int | None) -> PlannedCase:
    groups = _nnunet_groups(_images(src.parent), channels)
    m = CHANNEL_RE.match(strip_image_suffix(src))
    if groups is not None and m and m.group("case") in groups:
        name = m.group("case")
        paths = _case_paths(name, groups[name], channels, src.parent)
    else:
        name = strip_image_suffix(src)
        paths = _case_paths(name, {0: src}, channels, src.parent)
    return PlannedCase(tuple(paths), dst if dst_is_file else dst / f"{name}{_output_suffix(paths[0])}")


def plan_outputs(inputs: str | Path, output: str | Path, channels: int | None = None) -> list[PlannedCase]:
    """The cases of ``-i``/``-o``: (channel images, output label map) pairs — a file to a file (or into a folder), or a
    folder of images to a folder.  The output is checked first (:func:`procto.io.check_output`; a file must end in an
    image suffix procto writes), nothing is created.

    nnU-Net style inputs (every image named ``<case>_XXXX`` and every case having ``_0000``) are grouped by case, the
    channels in order, and the output is named after the case (``case_0000.nii.gz`` → ``case.nii.gz``, as nnU-Net
    names predictions); other images are one-channel cases keeping their names.  ``channels``: the model's channel
    count; a case with another count is one :class:`InputError`."""
    src, dst = Path(inputs), Path(output)
    dst_is_file = check_prediction_output(dst)
    if not src.exists():
        raise InputError("no such file or folder", src)
    if src.is_dir() and not _images(src):
        # a DICOM series folder is one image; anything else is a folder of images
        if any(p.is_file() for p in src.iterdir()):
            _case_paths(src.name, {0: src}, channels, src)
            return [PlannedCase((src,), dst if dst_is_file else dst / f"{src.name}.nii.gz")]
        raise InputError("no images in this folder", src)
    if src.is_file():
        return [_case_of_file(src, dst, dst_is_file, channels)]
    if dst_is_file:
        raise OutputError("input is a folder, so the output must be a folder too", dst)
    return _cases_of_folder(src, dst, channels)


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
    log: str | Path | None = None,
    on_start: Callable[[int], None] | None = None,
    on_case: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Predict every case of ``inputs`` (a file or a folder, see :func:`plan_outputs`) with a trained model; write
    label maps (atomically) in each input's geometry; return the written paths.

    Order of checks (so that nothing is created and no network is loaded for bad arguments): the output path, the
    model folder (folds, checkpoint, channel count), the inputs (cases and their channels); the network loads when the
    first case's images have been read and checked.  ``on_start(n_cases)`` is called once the cases are
    known, ``on_case(path)`` after each written label map; ``log`` receives nnU-Net's printed messages."""
    check_prediction_output(output)
    predictor = NNUNetPredictor(model, folds, device=device, mirror=mirror, step_size=step_size,
                                checkpoint=checkpoint, log=log)
    cases = plan_outputs(inputs, output, predictor.num_channels)
    if on_start is not None:
        on_start(len(cases))
    written: list[Path] = []
    for case in cases:
        seg = predictor.predict([read_image(p) for p in case.inputs], resize_to)
        write_image(seg, case.output)
        written.append(case.output)
        if on_case is not None:
            on_case(case.output)
    return written


__all__ = [
    "NNUNetPredictor",
    "RCSegNeXtPredictor",
    "PlannedCase",
    "CHANNEL_SUFFIX",
    "DEFAULT_LABELS",
    "dataset_labels",
    "channel_names",
    "find_model_dir",
    "trained_folds",
    "checkpoint_for",
    "case_name",
    "check_prediction_output",
    "plan_outputs",
    "predict",
]
