"""Mean ± sd aggregation, per-fold tables, formatting and the paired t-test."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from procto.errors import InputError
from procto.metrics import (
    MeanSD,
    flatten,
    fold_table,
    format_mean_sd,
    format_table,
    mean_sd,
    paired_t_test,
    summarize,
)

# hand-made per-case table: two folds, nested per-class results as evaluate_labels returns them
ROWS = [
    {"case": "a", "fold": 0, "rectum": {"dice": 0.90}, "tumour": {"dice": 0.70}},
    {"case": "b", "fold": 0, "rectum": {"dice": 0.80}, "tumour": {"dice": 0.80}},
    {"case": "c", "fold": 1, "rectum": {"dice": 0.85}, "tumour": {"dice": 0.60}},
    {"case": "d", "fold": 1, "rectum": {"dice": 0.95}, "tumour": {"dice": 0.70}},
    {"case": "e", "fold": 1, "rectum": {"dice": 0.90}, "tumour": {"dice": 0.80}},
]


def test_mean_sd_and_format():
    m = mean_sd([0.8, 0.85, 0.9])
    assert m.mean == pytest.approx(0.85) and m.sd == pytest.approx(0.05) and m.n == 3
    assert str(m) == "0.850 ± 0.050"
    assert format_mean_sd(0.81234, 0.03449) == "0.812 ± 0.034"
    assert format_mean_sd(0.81234, 0.03449, digits=2) == "0.81 ± 0.03"
    assert mean_sd([1.0, np.nan, 3.0]) == MeanSD(2.0, math.sqrt(2.0), 2)  # NaN left out
    assert mean_sd([1.0, 3.0], ddof=0).sd == pytest.approx(1.0)
    single = mean_sd([0.5])
    assert math.isnan(single.sd) and str(single) == "0.500"
    assert str(mean_sd([])) == "n/a"


def test_flatten():
    assert flatten(ROWS[0]) == {"case": "a", "fold": 0, "rectum/dice": 0.9, "tumour/dice": 0.7}


def test_summarize_overall_and_by_fold():
    overall = summarize(ROWS)["all"]
    assert list(overall) == ["rectum/dice", "tumour/dice"]  # identifier columns (case, fold) are not metrics
    assert list(summarize(ROWS, exclude=("case",))["all"]) == ["fold", "rectum/dice", "tumour/dice"]
    res = summarize(ROWS, ["rectum/dice", "tumour/dice"])["all"]
    assert res["rectum/dice"].mean == pytest.approx(0.88)
    assert res["rectum/dice"].sd == pytest.approx(np.std([0.9, 0.8, 0.85, 0.95, 0.9], ddof=1))
    by = summarize(ROWS, by="fold")
    assert list(by) == [0, 1] and list(by[0]) == ["rectum/dice", "tumour/dice"]
    assert by[0]["rectum/dice"].mean == pytest.approx(0.85) and by[0]["rectum/dice"].n == 2
    assert by[1]["tumour/dice"].mean == pytest.approx(0.7) and by[1]["tumour/dice"].sd == pytest.approx(0.1)


def test_fold_table_across_folds_and_cases():
    t = fold_table(ROWS)
    assert list(t) == [0, 1, "mean ± sd"]
    last = t["mean ± sd"]["rectum/dice"]
    # across folds: mean ± sd of the fold means 0.85 and 0.9
    assert last.mean == pytest.approx(0.875) and last.sd == pytest.approx(np.std([0.85, 0.9], ddof=1)) and last.n == 2
    pooled = fold_table(ROWS, across="cases")["mean ± sd"]["tumour/dice"]
    assert pooled.mean == pytest.approx(0.72) and pooled.n == 5
    text = format_table(t)
    lines = text.splitlines()
    assert lines[0] == "| fold | rectum/dice | tumour/dice |"
    assert lines[2] == "| 0 | 0.850 ± 0.071 | 0.750 ± 0.071 |"
    assert lines[-1] == "| mean ± sd | 0.875 ± 0.035 | 0.725 ± 0.035 |"


@pytest.mark.parametrize("seed", range(5))
def test_paired_t_test_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.8, 0.05, 12 + seed)
    b = a + rng.normal(0.01 * seed, 0.03, a.size)
    assert paired_t_test(a, b) == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-10, abs=1e-15)


def test_paired_t_test_degenerate():
    assert math.isnan(paired_t_test([1.0, 2.0], [1.0, 2.0]))
    assert paired_t_test([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]) == 0.0


def test_bad_input_raises():
    with pytest.raises(InputError, match="equal lengths"):
        paired_t_test([1, 2, 3], [1, 2])
    with pytest.raises(InputError, match="at least 2"):
        paired_t_test([1], [2])
    with pytest.raises(InputError, match="not found"):
        summarize(ROWS, ["hd95"])
    with pytest.raises(InputError, match="no rows"):
        summarize([])
    with pytest.raises(InputError, match="grouping column"):
        summarize([{"dice": 1.0}], by="fold")
    with pytest.raises(InputError, match="across"):
        fold_table(ROWS, across="everything")
