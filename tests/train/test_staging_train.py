"""Staging training protocol: data discovery, preprocessing, augmentation, determinism, checkpoint resume,
cross-validation table, and the end-to-end acceptance run of ``procto cv staging`` on a phantom MRI cohort."""

from __future__ import annotations

import csv
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from procto.errors import InputError
from procto.io import Volume, write_image
from procto.train.staging import (
    CV_COLUMNS,
    StagingConfig,
    StagingSample,
    augment_volume,
    cross_validate_staging,
    find_staging_cases,
    format_cv_table,
    load_checkpoint,
    load_staging_samples,
    method_name,
    prepare_sample,
    representative_slices,
    staging_metrics,
    train_staging,
)



pytestmark = pytest.mark.usefixtures("single_thread")  # deterministic results (tests/conftest.py)


TINY = dict(size=(32, 32), depth=4, n4=False, slice_epochs=1, epochs=2, batch_size=4, margin_mm=4.0)


def _toy_case(seed: int, stage: str, shape=(8, 48, 40)) -> tuple[Volume, Volume]:
    """A small sagittal-like stand-in: a dark-walled tube with an intermediate tumour that stays inside the wall
    (T2) or crosses it into the bright surrounding fat (T3)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]].astype(float)
    cy, cx = shape[1] / 2 + rng.uniform(-3, 3), shape[2] / 2 + rng.uniform(-3, 3)
    r = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    image = np.full(shape, 0.9, np.float32)  # fat
    image[r < 9] = 0.15  # muscularis
    image[r < 7] = 0.6  # mucosa / lumen
    label = np.zeros(shape, np.uint8)
    label[(r < 9) & (abs(z - shape[0] / 2) < 3)] = 1
    tumour = (r < (12 if stage == "T3" else 8)) & (x > cx + 1) & (abs(z - shape[0] / 2) < 2)
    image[tumour] = 0.45
    label[tumour] = 2
    image = image * 500 + rng.normal(0, 10, shape).astype(np.float32)
    vol = Volume(image.astype(np.float32), (4.0, 0.875, 0.875), (0.0, 0.0, 0.0))
    return vol, vol.with_array(label)


def _toy_samples(n: int = 8, config: StagingConfig | None = None) -> list[StagingSample]:
    config = config or StagingConfig(**TINY)
    out = []
    for i in range(n):
        stage = ("T2", "T3")[i % 2]
        image, label = _toy_case(i, stage)
        out.append(prepare_sample(f"toy_{i:02d}", image, label, stage, config))
    return out


def _write_folder(root: Path, n: int, layout: str) -> Path:
    rows = []
    for i in range(n):
        stage = ("T2", "T3")[i % 2]
        image, label = _toy_case(i, stage)
        case = f"case_{i:03d}"
        if layout == "nnunet":
            write_image(image, root / "imagesTr" / f"{case}_0000.nii.gz")
            write_image(label, root / "labelsTr" / f"{case}.nii.gz")
        else:
            write_image(image, root / case / "image.nii.gz")
            write_image(label, root / case / "label.nii.gz")
        rows.append({"case": case, "t_stage": stage})
    with (root / "stages.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case", "t_stage"])
        writer.writeheader()
        writer.writerows(rows)
    return root


# ------------------------------------------------------------------------------------------------ data
@pytest.mark.parametrize("layout", ["nnunet", "nifti"])
def test_find_and_load_cases(tmp_path: Path, layout: str) -> None:
    root = _write_folder(tmp_path / "data", 4, layout)
    records = find_staging_cases(root)
    assert [r.case_id for r in records] == [f"case_{i:03d}" for i in range(4)]
    assert [r.t_stage for r in records] == ["T2", "T3", "T2", "T3"]
    config = StagingConfig(**TINY)
    samples = load_staging_samples(records, config)
    assert samples[0].image.shape == (4, 32, 32) and samples[0].image.dtype == np.float32
    assert [s.target for s in samples] == [0, 1, 0, 1]
    assert all(s.representative.any() and s.valid.all() for s in samples)


def test_find_cases_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        find_staging_cases(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="stages.csv"):
        find_staging_cases(tmp_path / "empty")
    root = _write_folder(tmp_path / "bad", 2, "nnunet")
    (root / "stages.csv").write_text("case,t_stage\ncase_000,T4\n")
    with pytest.raises(InputError, match="T2 or T3"):
        find_staging_cases(root)
    (root / "stages.csv").write_text("case,t_stage\nnobody,T2\n")
    with pytest.raises(InputError, match="no image"):
        find_staging_cases(root)


def test_preprocessing_crops_around_rectum_and_pads_slices() -> None:
    image, label = _toy_case(0, "T3")
    config = StagingConfig(**{**TINY, "depth": 12})
    sample = prepare_sample("c", image, label, "T3", config)
    assert sample.image.shape == (12, 32, 32)
    assert sample.valid.sum() == 8 and not sample.valid[0] and not sample.valid[-1]  # 8 slices, zero padded to 12
    assert np.all(sample.image[~sample.valid] == 0)
    real = sample.image[sample.valid]
    assert abs(real.mean()) < 1e-3 and abs(real.std() - 1) < 0.05  # z-scored
    assert sample.target == 1 and sample.t_stage == "T3"
    # representative slices: the tumour slices (largest tumour area)
    assert set(np.flatnonzero(sample.representative)) <= set(np.flatnonzero(sample.valid))
    assert 1 <= sample.representative.sum() <= 3


def test_representative_slices() -> None:
    label = np.zeros((6, 4, 4), np.uint8)
    label[1, :2, :2] = 2  # area 4
    label[2] = 2  # area 16
    label[3, 0, 0] = 2  # area 1
    label[4] = 1
    valid = np.ones(6, bool)
    assert np.flatnonzero(representative_slices(label, valid, 2)).tolist() == [1, 2]
    assert np.flatnonzero(representative_slices(label, valid, 3)).tolist() == [1, 2, 3]
    assert np.flatnonzero(representative_slices(label == 1, valid, 1)).tolist() == [4]  # no tumour: mask area
    assert np.flatnonzero(representative_slices(None, valid, 3)).tolist() == [3]


def test_augmentation_seeded_and_slice_consistent() -> None:
    x = torch.from_numpy(_toy_samples(1)[0].image)
    valid = torch.tensor([True, True, True, False])
    outs = [augment_volume(x, valid, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2])
    assert outs[0].shape == x.shape and torch.all(outs[0][3] == 0)
    # many draws: every output finite, most of them changed
    changed = 0
    for s in range(20):
        y = augment_volume(x, valid, torch.Generator().manual_seed(100 + s))
        assert torch.isfinite(y).all()
        changed += int(not torch.allclose(y, x * valid[:, None, None]))
    assert changed >= 15


# ------------------------------------------------------------------------------------------------ training
def test_training_is_deterministic_under_a_seed() -> None:
    samples = _toy_samples(8)
    config = StagingConfig(**TINY, seed=3)
    a = train_staging(samples, config)
    b = train_staging(samples, config)
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), k
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    assert [r["phase"] for r in a.history] == ["slice", "volume", "volume"]
    c = train_staging(samples, StagingConfig(**TINY, seed=4))
    assert not torch.equal(a.model.classifier.weight, c.model.classifier.weight)


@pytest.mark.parametrize("stop_after", [1, 2])  # interrupted at the slice → volume switch, or within the volume level
def test_resume_continues_identically(tmp_path: Path, stop_after: int) -> None:
    samples = _toy_samples(8)
    config = StagingConfig(**{**TINY, "slice_epochs": 1, "epochs": 2}, seed=1)
    full = train_staging(samples, config, tmp_path / "full")
    part = train_staging(samples, config, tmp_path / "part", stop_after=stop_after)
    assert part.checkpoint is None and (tmp_path / "part" / "last.pt").is_file()
    assert len(part.history) == stop_after
    resumed = train_staging(samples, config, tmp_path / "part", resume=True)
    assert len(resumed.history) == 3
    for (k, va), vb in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(va, vb), k
    assert [r["loss"] for r in full.history] == [r["loss"] for r in resumed.history]
    # outputs: final checkpoint, CSV log with one row per epoch
    model, cfg, state = load_checkpoint(tmp_path / "part" / "model.pt")
    assert cfg == config and state["epoch"] == 3
    # procto's one checkpoint format: plain types and tensors, the network by its registry name
    raw = torch.load(tmp_path / "part" / "model.pt", weights_only=True)
    assert raw["task"] == "staging" and raw["model"] == "staging_f_rmc5" and "training" not in raw
    assert raw["model_kwargs"] == {"aggregation": "bilinear"} and not hasattr(model, "staging_config")
    assert {"optimizer", "task_state"} <= set(torch.load(tmp_path / "part" / "last.pt", weights_only=True)["training"])
    rows = list(csv.DictReader((tmp_path / "part" / "log.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"loss", "focal", "triplet", "lr", "train_acc"} <= set(rows[0])
    # resuming with other settings is refused
    with pytest.raises(InputError, match="different settings"):
        train_staging(samples, StagingConfig(**{**TINY, "epochs": 5}, seed=1), tmp_path / "part", resume=True)


@pytest.mark.parametrize("supplementary,aggregation", [("center", "bilinear"), (None, "avg"), ("triplet", "attention")])
def test_other_losses_and_aggregations_train(supplementary, aggregation) -> None:
    samples = _toy_samples(4)
    config = StagingConfig(**{**TINY, "slice_epochs": 1, "epochs": 1}, supplementary=supplementary,
                           aggregation=aggregation, augment=False)
    result = train_staging(samples, config)
    assert all(np.isfinite(r["loss"]) for r in result.history)
    if supplementary == "center":  # one centre per class in each feature space: slice (256) and volume (256²)
        assert result.history[0]["center"] >= 0


def test_load_checkpoint_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.pt"
    torch.save({"weights": 1}, bad)
    with pytest.raises(InputError, match="not a procto staging checkpoint"):
        load_checkpoint(bad)
    (tmp_path / "y.pt").write_text("garbage")
    with pytest.raises(InputError):
        load_checkpoint(tmp_path / "y.pt")
    with pytest.raises(InputError):
        load_checkpoint(tmp_path / "missing.pt")


def test_config_validation_and_method_name() -> None:
    assert method_name(StagingConfig()) == "f-rMC5+Bilinear+Triplet"
    assert method_name(StagingConfig(variant="r2d", aggregation="avg", supplementary=None)) == "f-R2D+AVP"
    assert StagingConfig.from_dict(StagingConfig(size=(64, 64)).to_dict()) == StagingConfig(size=(64, 64))
    for bad in (dict(size=(16, 16)), dict(batch_size=1), dict(schedule="step"), dict(supplementary="arcface")):
        with pytest.raises(InputError):
            StagingConfig(**bad)


# ------------------------------------------------------------------------------------------------ cross-validation
def test_staging_metrics() -> None:
    m = staging_metrics([0, 0, 1, 1, 1], [0.1, 0.6, 0.4, 0.8, 0.9])
    assert m["auc"] == pytest.approx(5 / 6)
    assert m["acc"] == pytest.approx(3 / 5)
    assert m["recall_t2"] == pytest.approx(0.5) and m["recall_t3"] == pytest.approx(2 / 3)


def test_cross_validation_table_layout(tmp_path: Path) -> None:
    samples = _toy_samples(8)
    config = StagingConfig(**{**TINY, "slice_epochs": 0, "epochs": 1})
    result = cross_validate_staging(samples, config, folds=2, out_dir=tmp_path)
    assert len(result.folds) == 2 and sum(r["n_test"] for r in result.folds) == 8
    assert sorted(p["case"] for p in result.predictions) == sorted(s.case_id for s in samples)
    table = format_cv_table([result.row])
    header = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert header == list(CV_COLUMNS) == ["Method", "AUC", "ACC", "Recall(T2)", "Recall(T3)"]
    assert result.row["Method"] == "f-rMC5+Bilinear+Triplet"
    assert re.fullmatch(r"\d\.\d{3}±\d\.\d{3}", result.row["AUC"])
    assert re.fullmatch(r"\d+\.\d±\d+\.\d", result.row["ACC"])
    for name in ("cv_folds.csv", "cv_predictions.csv", "cv_table.md", "fold_0/log.csv"):
        assert (tmp_path / name).is_file()
    with pytest.raises(InputError, match="at least 5 cases of each stage"):
        cross_validate_staging(samples, config, folds=5)


# ------------------------------------------------------------------------------------------------ acceptance
def _parse_table(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in rows]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cv_staging_on_phantom_mri_cohort(tmp_path: Path) -> None:
    """``procto cv staging`` on a phantom MRI cohort: f-rMC5 + bilinear + focal/triplet reaches AUC ≥ 0.85.

    CPU budget (≈2–2.5 min on 2 shared cores, one torch thread): 90 sagittal T2 phantoms of 16 × 96 × 96 voxels
    (4 × 1.25 × 1.25 mm), 3 stratified folds (60 training / 30 hold-out cases each), crops of 48 × 48 × 6 around the
    tumour with a 6 mm margin, 16 slice-level + 4 volume-level epochs, no N4 (≈2–30 s per volume with SimpleITK; it
    has its own tests in tests/preprocess/test_n4.py).
    """
    from typer.testing import CliRunner

    from procto.cli import app
    from procto.phantom import write_cohort

    t0 = time.perf_counter()
    root = write_cohort(tmp_path / "cohort", 90, "mri", layout="nifti", seed=0, shape=(16, 96, 96),
                        spacing=(4.0, 1.25, 1.25))
    t_data = time.perf_counter() - t0
    out = tmp_path / "cv"
    result = CliRunner().invoke(app, [
        "cv", "staging", "--data", str(root), "--folds", "3", "--out", str(out),
        "--variant", "rmc5", "--aggregation", "bilinear", "--loss", "triplet",
        "--size", "48", "--depth", "6", "--crop-on", "tumour", "--margin", "6", "--no-n4",
        "--slice-epochs", "16", "--epochs", "4", "--batch-size", "4", "--threads", "1", "--seed", "0",
    ])
    elapsed = time.perf_counter() - t0
    assert result.exit_code == 0, result.output
    table = _parse_table(result.stdout)
    assert table[0] == ["Method", "AUC", "ACC", "Recall(T2)", "Recall(T3)"]  # the layout of Tables 2–4
    method, auc, acc, rec_t2, rec_t3 = table[1]
    assert method == "f-rMC5+Bilinear+Triplet"
    print(f"\n{result.stdout}\ncohort written in {t_data:.0f} s, total {elapsed:.0f} s")
    assert float(auc.split("±")[0]) >= 0.85, result.stdout
    for cell in (acc, rec_t2, rec_t3):
        assert 0.0 <= float(cell.split("±")[0]) <= 100.0
    folds = list(csv.DictReader((out / "cv_folds.csv").open()))
    assert len(folds) == 3 and sum(int(r["n_test"]) for r in folds) == 90
