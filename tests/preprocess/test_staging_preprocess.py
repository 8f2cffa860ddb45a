"""Staging preparation shared by training and inference: the settings' hierarchy (preprocessing ⊂ model ⊂ training
run), the stage table, and the staging section of the paper tables."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from procto.errors import InputError
from procto.infer.staging import StagingModelConfig
from procto.metrics import mean_sd
from procto.metrics.tables import STAGING_CV_COLUMNS, staging_cv_row, staging_cv_table
from procto.preprocess.staging import StagingPreprocessing, stage_value
from procto.preprocess.staging_data import read_stages_csv
from procto.train.staging import StagingConfig


def test_settings_hierarchy_round_trips_through_a_checkpoint_dict() -> None:
    run = StagingConfig(size=(64, 64), depth=6, crop_on="tumour", variant="r2d", tta=False, threshold=0.4, epochs=3)
    saved = run.to_dict()  # what a checkpoint holds
    prep = StagingPreprocessing.from_dict(saved)
    assert prep == StagingPreprocessing(size=(64, 64), depth=6, crop_on="tumour")
    model = StagingModelConfig.from_dict(saved)
    assert (model.variant, model.tta, model.threshold, model.size) == ("r2d", False, 0.4, (64, 64))
    assert StagingConfig.from_dict(saved) == run
    assert isinstance(run, StagingModelConfig) and isinstance(model, StagingPreprocessing)
    # the defaults are defined once: a bare model's settings are the training defaults
    default = StagingConfig()
    assert StagingModelConfig() == StagingModelConfig.from_dict(default.to_dict())
    # preprocessing checks apply at every level
    for cls in (StagingPreprocessing, StagingModelConfig, StagingConfig):
        with pytest.raises(InputError, match="size"):
            cls(size=(16, 16))
        with pytest.raises(InputError, match="crop_on"):
            cls(crop_on="colon")


def test_stage_values() -> None:
    assert [stage_value(v) for v in ("T2", " t3 ", "2", "3", "0", "1", 1)] == ["T2", "T3", "T2", "T3", "T2", "T3", "T3"]
    with pytest.raises(InputError, match="T2 or T3"):
        stage_value("T4", "table.csv")


def test_read_stages_csv(tmp_path: Path) -> None:
    table = tmp_path / "stages.csv"
    table.write_text("ID,Stage,n_nodes\ncase_a,T2,1\n case_b ,1,0\n,T3,2\n")
    assert read_stages_csv(table) == {"case_a": "T2", "case_b": "T3"}  # aliases, 0/1, blank case ids skipped
    table.write_text("case,size\ncase_a,3\n")
    with pytest.raises(InputError, match="t_stage column"):
        read_stages_csv(table)
    table.write_text("case,t_stage\n")
    with pytest.raises(InputError, match="no rows"):
        read_stages_csv(table)
    with pytest.raises(InputError, match="cannot read"):
        read_stages_csv(tmp_path / "missing.csv")


def test_staging_table_section() -> None:
    summary = {"auc": mean_sd([0.8, 0.9]), "acc": mean_sd([0.7, 0.8]), "recall_t2": mean_sd([0.5]),
               "recall_t3": mean_sd([math.nan])}
    row = staging_cv_row("f-rMC5+Bilinear+Triplet", summary)
    assert row == {"Method": "f-rMC5+Bilinear+Triplet", "AUC": "0.850±0.071", "ACC": "75.0±7.1",
                   "Recall(T2)": "50.0", "Recall(T3)": "n/a"}
    lines = staging_cv_table([row]).splitlines()
    assert lines[0] == "| " + " | ".join(STAGING_CV_COLUMNS) + " |"
    assert lines[2] == "| f-rMC5+Bilinear+Triplet | 0.850±0.071 | 75.0±7.1 | 50.0 | n/a |"
