"""AG-CRC inference (paper 001): CT + TotalSegmentator map (+ WORD-model map) → colorectal tumour label map in the CT's
geometry, on top of nnU-Net's predictor (:class:`procto.infer.nnunet.NNUNetPredictor`).

>>> from procto.infer.agcrc import AGCRCPredictor, predict_agcrc             # doctest: +SKIP
>>> seg = AGCRCPredictor("runs/agcrc").predict("colon_001.nii.gz", "ts/colon_001.nii.gz")   # Volume, 0/1 uint8
>>> predict_agcrc("runs/agcrc", "Task10_Colon/imagesTs", "ts_test/", "predictions/")         # folders, by case name

* The three input channels are built exactly as for training (:func:`procto.preprocess.agcrc.agcrc_inputs`), with the
  id scheme and the OOI dilation that the model's ``dataset.json`` recorded (``"procto_agcrc"``: ``mos_scheme``,
  ``dilation``).
* Models trained with the AF-loss (the plans' ``"procto_agcrc"`` record says ``af_loss``) multiply the tumour
  probability by the OOI (agcrc-facts §5: the effective output of Eq. 8 is Ŷ∘O): ``q_fg = p_fg·O``,
  ``q_bg = 1 − q_fg``, arg-max.  ``mask_ooi`` forces it on or off.  No post-processing (§6).
* ``mos_ts="auto"`` runs TotalSegmentator (task ``total``, one multi-label map) when the ``totalsegmentator`` package
  and its weights are installed (:func:`run_totalsegmentator`).  procto never downloads anything: without them the
  error says how to make the organ map.

Inference never imports :mod:`procto.train`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import tempfile
from pathlib import Path
from typing import Callable, NamedTuple, Sequence, Union

import numpy as np

from procto.errors import InputError, OutputError
from procto.infer.nnunet import NNUNetPredictor, case_name, check_prediction_output, read_dataset_json
from procto.io import Volume, image_suffix, read_image, strip_image_suffix, write_image
from procto.io.image import WRITE_SUFFIXES
from procto.preprocess.agcrc import agcrc_inputs

__all__ = ["MOS_AUTO", "TS_TOTAL_TASKS", "TS_HOWTO", "AGCRCPredictor", "AGCRCPlannedCase", "mask_probabilities",
           "plans_record", "check_totalsegmentator", "run_totalsegmentator", "plan_agcrc_cases", "predict_agcrc"]

#: The value of ``mos_ts`` (``--mos auto``) that runs TotalSegmentator on each CT.
MOS_AUTO = "auto"
#: nnU-Net data sets of TotalSegmentator's ``total`` task (1.5 mm); their weights must be installed for ``auto``.
TS_TOTAL_TASKS = (291, 292, 293, 294, 295)
#: How to get an organ map without ``--mos auto``.
TS_HOWTO = ("install TotalSegmentator (pip install TotalSegmentator) and its weights, or pass --ts <map>: "
            "TotalSegmentator -i ct.nii.gz -o ts.nii.gz --ml")

MapSource = Union[Volume, str, Path]


# ------------------------------------------------------------------------------------------------- model records
def _dataset_record(model_dir: Path) -> tuple[str, int]:
    """The MOS id scheme and OOI dilation the model's training data used (``dataset.json`` → ``"procto_agcrc"``)."""
    path = model_dir / "dataset.json"
    record = read_dataset_json(path).get("procto_agcrc")
    if not isinstance(record, dict):
        raise InputError('not an AG-CRC model: dataset.json has no "procto_agcrc" record (train it on a data set '
                         "written by `procto prepare agcrc`)", path)
    if record.get("target", "tumour") != "tumour":
        raise InputError("is an AG-SSL pre-training model (bowel-wall target); predict with the fine-tuned model of "
                         "`procto train agcrc`", model_dir)
    scheme = record.get("mos_scheme", "ts_v2")
    dilation = record.get("dilation", 3)
    if scheme not in ("ts_v2", "ts_v1"):
        raise InputError(f"procto_agcrc.mos_scheme must be 'ts_v2' or 'ts_v1', got {scheme!r}", path)
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 0:
        raise InputError(f"procto_agcrc.dilation must be an integer >= 0, got {dilation!r}", path)
    return scheme, dilation


def plans_record(model_dir: str | Path) -> dict:
    """The ``"procto_agcrc"`` record of a model folder's ``plans.json`` (``config``, ``af_loss``, ``sampling``, …) in
    the configuration the folder was trained with (the last part of ``Trainer__Plans__Configuration``, default
    ``3d_fullres``; ``inherits_from`` followed); ``{}`` when the plans carry none."""
    model_dir = Path(model_dir)
    path = model_dir / "plans.json"
    try:
        plans = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"plans.json is not readable JSON ({exc})", path) from None
    configs = plans.get("configurations") if isinstance(plans, dict) else None
    if not isinstance(configs, dict):
        return {}
    parts = model_dir.name.split("__")
    name = parts[-1] if len(parts) >= 3 else "3d_fullres"
    seen: set[str] = set()
    while isinstance(name, str) and isinstance(configs.get(name), dict) and name not in seen:
        seen.add(name)
        record = configs[name].get("procto_agcrc")
        if isinstance(record, dict):
            return dict(record)
        name = configs[name].get("inherits_from")
    return {}


# ------------------------------------------------------------------------------------------------- predictor
def mask_probabilities(probs: np.ndarray, ooi: np.ndarray) -> np.ndarray:
    """AF-loss output (Eq. 8 at inference): foreground probabilities times the binary OOI (``ooi > 0.5``), background
    ``1 − Σ`` foreground.  ``probs`` (C, z, y, x), ``ooi`` (z, y, x); returns a new float32 array."""
    probs = np.asarray(probs, dtype=np.float32)
    o = np.asarray(ooi) > 0.5
    if probs.ndim != o.ndim + 1 or probs.shape[1:] != o.shape:
        raise InputError(f"OOI of shape {o.shape} does not match probabilities of shape {probs.shape}")
    out = np.empty_like(probs)
    out[1:] = probs[1:] * o
    out[0] = 1.0 - out[1:].sum(axis=0)
    return out


class AGCRCPredictor:
    """A trained AG-CRC model (an nnU-Net results folder written by procto's AG-CRC trainers) on CT + organ maps.

    Args:
        model: the model folder (``…__nnUNetPlans__3d_fullres``, one of its ``fold_X``, or ``--out`` of training).
        folds: folds to ensemble (None: the folds the path names, else every trained fold).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        mask_ooi: multiply the tumour probability by the OOI; None = what the model was trained with (the plans'
            ``procto_agcrc.af_loss``; off when the plans do not say), True/False forces it.
        checkpoint, mirror, step_size, log: as :class:`~procto.infer.nnunet.NNUNetPredictor`.

    Nothing heavy happens here: the network loads on the first prediction.
    """

    def __init__(self, model: str | Path, folds: Sequence[int | str] | None = None, *, device: str | None = "auto",
                 mask_ooi: bool | None = None, checkpoint: str | None = None, mirror: bool = True,
                 step_size: float = 0.5, log: str | Path | None = None):
        self.nnunet = NNUNetPredictor(model, folds, device=device, mirror=mirror, step_size=step_size,
                                      checkpoint=checkpoint, log=log)
        self.model_dir = self.nnunet.model_dir
        if self.nnunet.num_channels != 3:
            raise InputError(f"not an AG-CRC model: it takes {self.nnunet.num_channels} input channel(s) "
                             f"({', '.join(self.nnunet.channel_names)}), AG-CRC takes 3 (CT, MOS, OOI)",
                             self.model_dir / "dataset.json")
        self.scheme, self.dilation = _dataset_record(self.model_dir)
        self.record = plans_record(self.model_dir)
        self.af_loss = bool(self.record.get("af_loss", False))
        self.mask_ooi = self.af_loss if mask_ooi is None else bool(mask_ooi)
        self.labels = self.nnunet.labels

    @property
    def folds(self) -> list[int | str]:
        return self.nnunet.folds

    def inputs(self, ct: MapSource, mos_ts: MapSource, mos_word: MapSource | None = None, *,
               case_id: str | None = None) -> list[Volume]:
        """The model's three channels ``[CT, MOS id / max id, OOI]`` on the CT's grid, with the model's id scheme and
        dilation; bad input (geometry, ids, NaN, not 3D) is one :class:`InputError` naming the file."""
        return agcrc_inputs(ct, mos_ts, mos_word, scheme=self.scheme, dilation=self.dilation, case_id=case_id)

    def probabilities_of(self, channels: Sequence[Volume]) -> np.ndarray:
        """Class probabilities ``(C, z, y, x)`` on the CT's grid from the three channels of :meth:`inputs`, OOI-masked
        when :attr:`mask_ooi`."""
        probs = self.nnunet.probabilities(list(channels))
        return mask_probabilities(probs, channels[2].array) if self.mask_ooi else probs

    def probabilities(self, ct: MapSource, mos_ts: MapSource, mos_word: MapSource | None = None) -> np.ndarray:
        """Class probabilities ``(C, z, y, x)`` (background, tumour) of one CT on its grid."""
        return self.probabilities_of(self.inputs(ct, mos_ts, mos_word))

    def predict_inputs(self, channels: Sequence[Volume]) -> Volume:
        """Tumour label map (uint8 0/1) in the CT's geometry from the three channels of :meth:`inputs`."""
        ref = channels[0]
        seg = np.argmax(self.probabilities_of(channels), axis=0).astype(np.uint8)
        masked = "OOI-masked" if self.mask_ooi else "unmasked"
        return Volume(seg, ref.spacing, ref.origin, ref.direction.copy(),
                      {"description": f"procto AG-CRC tumour prediction ({masked})"})

    def predict(self, ct: MapSource, mos_ts: MapSource, mos_word: MapSource | None = None) -> Volume:
        """Tumour label map (uint8: 0 background, 1 tumour) of one CT, in the CT's geometry.  ``ct``, ``mos_ts`` (the
        TotalSegmentator map, all classes) and ``mos_word`` (optional WORD-model map) are Volumes or paths."""
        return self.predict_inputs(self.inputs(ct, mos_ts, mos_word))


# ------------------------------------------------------------------------------------------------- TotalSegmentator
def check_totalsegmentator() -> Path:
    """Check, downloading nothing, that the ``totalsegmentator`` package and the weights of its ``total`` task are
    installed; returns the weights folder.  Otherwise one :class:`InputError` saying how to get an organ map."""
    if importlib.util.find_spec("totalsegmentator") is None:
        raise InputError(f"--mos auto needs the totalsegmentator package, which is not installed; {TS_HOWTO}")
    from totalsegmentator.config import get_weights_dir

    weights = Path(get_weights_dir())
    missing = [t for t in TS_TOTAL_TASKS if not weights.is_dir() or not any(weights.glob(f"Dataset{t}_*"))]
    if missing:
        raise InputError(f"TotalSegmentator's weights of task 'total' (Dataset{missing[0]}_…) are not installed "
                         "here and procto downloads nothing; install them (totalseg_download_weights -t total, or "
                         "set TOTALSEG_WEIGHTS_PATH), or pass --ts <map>: TotalSegmentator -i ct.nii.gz -o ts.nii.gz "
                         "--ml", weights)
    return weights


def run_totalsegmentator(ct_path: str | Path, out_path: str | Path, *, v1_order: bool = False,
                         device: str | None = "auto", log: str | Path | None = None) -> Path:
    """Run TotalSegmentator's Python API (task ``total``, one multi-label map: ``ml=True``) on one CT and write the
    map to ``out_path`` (``.nii.gz``) atomically; ``v1_order`` writes TotalSegmentator v1 ids (scheme ``ts_v1``).
    Only when :func:`check_totalsegmentator` finds the package and its weights: nothing is downloaded."""
    from procto.infer.nnunet_env import quiet_stdout
    from procto.io import atomic_output, check_output
    from procto.util import resolve_device

    check_totalsegmentator()
    out = check_output(out_path, suffixes=(".nii.gz", ".nii"))
    kind = resolve_device(device).type
    from totalsegmentator.python_api import totalsegmentator

    with atomic_output(out, suffix=".nii.gz" if out.name.lower().endswith(".gz") else ".nii") as tmp:
        with quiet_stdout(log):
            totalsegmentator(input=str(ct_path), output=str(tmp), ml=True, task="total", quiet=True,
                             v1_order=v1_order, device="gpu" if kind == "cuda" else kind)
    return out


# ------------------------------------------------------------------------------------------------- files and folders
class AGCRCPlannedCase(NamedTuple):
    """One case to predict: its CT, organ maps (``mos_ts`` None: TotalSegmentator runs) and the output label map."""

    case: str
    ct: Path
    mos_ts: Path | None
    mos_word: Path | None
    output: Path


def _ct_images(ct: Path) -> tuple[list[Path], bool]:
    """The CT images of ``ct`` and whether it is a folder of cases (a file or a DICOM series folder is one CT)."""
    if not ct.exists():
        raise InputError("no such file or folder", ct)
    if ct.is_file():
        return [ct], False
    images = sorted(p for p in ct.iterdir() if p.is_file() and image_suffix(p) and not p.name.startswith("."))
    if images:
        return images, True
    if any(p.is_file() for p in ct.iterdir()):
        return [ct], False  # a DICOM series folder
    raise InputError("no images in this folder", ct)


def _per_organ_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like TotalSegmentator's output without ``--ml`` (one mask per organ)."""
    return (folder / "colon.nii.gz").is_file() and (folder / "small_bowel.nii.gz").is_file()


def _find_map(source: Path, names: Sequence[str], what: str, single: bool) -> Path | None:
    """The organ map of a case: ``source`` itself when it is a file (one case only), else the image in the folder
    ``source`` named as the case (``names``: the CT's file name, then its case name)."""
    if source.is_file():
        if not single:
            raise InputError(f"the CT input is a folder of cases, so the {what} input must be a folder of maps "
                             "named as the CTs", source)
        return source
    if not source.is_dir():
        raise InputError(f"{what} map not found", source)
    if _per_organ_folder(source):
        raise InputError(f"is a folder of per-organ masks; run {what} with --ml to write one label map per case",
                         source)
    for name in dict.fromkeys(names):
        if (source / name).is_dir() and _per_organ_folder(source / name):
            raise InputError(f"is a folder of per-organ masks; run {what} with --ml to write one label map per case "
                             f"({name}.nii.gz)", source / name)
        for path in sorted(source.glob(f"{name}.*")):
            if path.is_file() and image_suffix(path) and strip_image_suffix(path) == name:
                return path
    return None


def _output_for(ct: Path, case: str, out: Path, out_is_file: bool) -> Path:
    if out_is_file:
        return out
    suffix = image_suffix(ct) if ct.is_file() and image_suffix(ct) in WRITE_SUFFIXES else ".nii.gz"
    return out / f"{case}{suffix}"


def plan_agcrc_cases(ct: str | Path, mos_ts: str | Path, out: str | Path,
                     mos_word: str | Path | None = None) -> list[AGCRCPlannedCase]:
    """Pair CTs with their organ maps and outputs, reading no image and creating nothing.

    ``ct``: a CT file, a DICOM series folder or a folder of CTs (MSD ``imagesTs``: ``colon_001.nii.gz``; nnU-Net
    style ``colon_001_0000.nii.gz`` too).  ``mos_ts``: the TotalSegmentator map (a file for one CT), a folder of maps
    named as the CTs (``colon_001.nii.gz``, TotalSegmentator's ``--ml`` output per case), or ``"auto"``.
    ``mos_word``: optional WORD-model maps, the same way.  ``out``: a label-map file (one CT) or a folder
    (``<case>.nii.gz``, named as nnU-Net names predictions).  The output is checked first; missing maps are one
    :class:`InputError` naming the folder, how many and the first missing file."""
    out_is_file = check_prediction_output(out)
    out = Path(out)
    auto = isinstance(mos_ts, str) and mos_ts == MOS_AUTO
    images, is_folder = _ct_images(Path(ct))
    if is_folder and out_is_file:
        raise OutputError("the CT input is a folder, so the output must be a folder too", out)
    sources = [] if auto else [(Path(mos_ts), "TotalSegmentator")]
    sources += [(Path(mos_word), "the WORD model")] if mos_word is not None else []
    cases, outputs, missing = [], {}, {what: [] for _, what in sources}
    for image in images:
        name = image.name if image.is_dir() else strip_image_suffix(image)
        case = name if image.is_dir() else case_name(image)
        found = {what: _find_map(src, (name, case), what, not is_folder) for src, what in sources}
        for what, path in found.items():
            if path is None:
                missing[what].append(case)
        output = _output_for(image, case, out, out_is_file)
        if output in outputs:
            raise InputError(f"case {case!r} appears twice ({outputs[output].name}, {image.name})", image.parent)
        outputs[output] = image
        cases.append(AGCRCPlannedCase(case, image, found.get("TotalSegmentator"), found.get("the WORD model"),
                                      output))
    for src, what in sources:
        if missing[what]:
            raise InputError(f"no {what} label map for {len(missing[what])} of {len(cases)} case(s) "
                             f"(e.g. {missing[what][0]}.nii.gz)", src)
    return cases


def predict_agcrc(model: str | Path, ct: str | Path, mos_ts: str | Path, out: str | Path,
                  mos_word: str | Path | None = None, *, folds: Sequence[int | str] | None = None,
                  device: str | None = "auto", mask_ooi: bool | None = None, checkpoint: str | None = None,
                  mirror: bool = True, step_size: float = 0.5, log: str | Path | None = None,
                  on_start: Callable[[int], None] | None = None,
                  on_case: Callable[[Path], None] | None = None) -> list[Path]:
    """Segment the tumour of every CT of ``ct`` (a file or a folder, see :func:`plan_agcrc_cases`) with a trained
    AG-CRC model; write each label map (uint8 0/1, the CT's geometry) atomically; return the written paths.

    Order of checks, so that bad input creates nothing and loads no network: the output path, the model folder, the
    pairing of CTs and maps, TotalSegmentator (``mos_ts="auto"``), then every case's images (geometry of the maps
    against the CT, ids inside the model's scheme, no NaN, 3D).  ``on_start(n_cases)`` is called once the cases are
    checked, ``on_case(path)`` after each written label map.  Other arguments: :class:`AGCRCPredictor`."""
    check_prediction_output(out)
    predictor = AGCRCPredictor(model, folds, device=device, mask_ooi=mask_ooi, checkpoint=checkpoint, mirror=mirror,
                               step_size=step_size, log=log)
    cases = plan_agcrc_cases(ct, mos_ts, out, mos_word)
    auto = any(c.mos_ts is None for c in cases)
    if auto:
        check_totalsegmentator()
    ready: list[Volume] | None = None
    for case in cases:  # every input is checked before anything is written
        if case.mos_ts is None:
            read_image(case.ct)
            if case.mos_word is not None:
                read_image(case.mos_word)
        else:
            channels = predictor.inputs(case.ct, case.mos_ts, case.mos_word)
            ready = channels if len(cases) == 1 else None
    if on_start is not None:
        on_start(len(cases))
    written: list[Path] = []
    scratch = tempfile.TemporaryDirectory(prefix="procto_agcrc_ts_") if auto else contextlib.nullcontext("")
    with scratch as tmp:
        for case in cases:
            channels = ready
            if channels is None:
                ts = case.mos_ts or run_totalsegmentator(case.ct, Path(tmp) / f"{case.case}.nii.gz",
                                                         v1_order=predictor.scheme == "ts_v1", device=device, log=log)
                channels = predictor.inputs(case.ct, ts, case.mos_word)
            write_image(predictor.predict_inputs(channels), case.output)
            written.append(case.output)
            if on_case is not None:
                on_case(case.output)
    return written
