"""Cross-validation of the staging CNN as the paper reports it.

"We perform 10-fold cross-validation ... and report the performance score of hold-out set"; "we report mean and
standard deviation of average area-under-curve (AUC), accuracy, sensitivity, and specificity over ten folds" —
:func:`cross_validate_staging` (stratified by T stage, seeded), :func:`staging_metrics` per hold-out fold, and the
table row in the layout of Tables 2–4 (:func:`procto.metrics.tables.staging_cv_table`: Method, AUC, ACC,
Recall(T2), Recall(T3)).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from procto.errors import InputError
from procto.infer.staging import predict_probabilities
from procto.io import write_csv, write_text_atomic
from procto.metrics.tables import staging_cv_row, staging_cv_table
from procto.preprocess.staging import StagingSample
from procto.train.staging.config import StagingConfig, method_name
from procto.train.staging.loop import train_staging

__all__ = ["CVResult", "cross_validate_staging", "staging_metrics"]

_METRICS = ("auc", "acc", "recall_t2", "recall_t3")


def staging_metrics(y_true: Sequence[int], t3_probability: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """AUC, accuracy, recall(T2) (specificity) and recall(T3) (sensitivity) of one hold-out set."""
    from procto.metrics import accuracy, per_class_sensitivity, roc_auc

    y = np.asarray(y_true, dtype=int)
    p = np.asarray(t3_probability, dtype=float)
    pred = (p >= threshold).astype(int)
    recalls = per_class_sensitivity(y, pred, labels=[0, 1])
    auc = roc_auc(y, p) if len(np.unique(y)) == 2 else float("nan")
    return {"auc": auc, "acc": accuracy(y, pred), "recall_t2": recalls[0], "recall_t3": recalls[1]}


@dataclass
class CVResult:
    """Per-fold metrics (``folds``: list of dicts with fold, n_train, n_test, auc, acc, recall_t2, recall_t3),
    hold-out predictions (``predictions``: case, fold, t_stage, t3_probability) and the table row (``row``)."""

    method: str
    folds: list[dict[str, Any]]
    predictions: list[dict[str, Any]]
    row: dict[str, str]
    summary: dict[str, Any]


def _splits(samples: Sequence[StagingSample], folds: int, seed: int):
    """``(train indices, test indices)`` of a ``folds``-fold split stratified by T stage."""
    from sklearn.model_selection import StratifiedKFold

    targets = np.array([s.target for s in samples])
    counts = np.bincount(targets, minlength=2)
    if folds < 2:
        raise InputError(f"folds must be >= 2, got {folds}")
    if counts.min() < folds:
        raise InputError(f"{folds}-fold stratified cross-validation needs at least {folds} cases of each stage, "
                         f"got T2={counts[0]}, T3={counts[1]}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(seed))
    return list(splitter.split(np.zeros(len(targets)), targets))


def _write_results(out: Path, result: CVResult) -> None:
    write_csv(out / "cv_folds.csv", result.folds)
    write_csv(out / "cv_predictions.csv", result.predictions)
    write_text_atomic(out / "cv_table.md", staging_cv_table([result.row]) + "\n")


def cross_validate_staging(
    samples: Sequence[StagingSample],
    config: StagingConfig,
    folds: int = 10,
    *,
    out_dir: str | Path | None = None,
    device: str | None = None,
    on_fold: Callable[[dict[str, Any]], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> CVResult:
    """``folds``-fold cross-validation stratified by T stage (seeded by ``config.seed``): train on the other folds,
    predict the hold-out fold (with TTA), report mean ± sd over folds of AUC, accuracy, recall(T2), recall(T3).

    ``out_dir``: writes ``cv_folds.csv``, ``cv_predictions.csv``, ``cv_table.md`` and each fold's ``log.csv``.
    """
    from procto.metrics import mean_sd

    out = Path(out_dir) if out_dir is not None else None
    fold_rows: list[dict[str, Any]] = []
    predictions: list[dict[str, Any]] = []
    for k, (train_idx, test_idx) in enumerate(_splits(samples, folds, config.seed)):
        result = train_staging([samples[i] for i in train_idx], config, device=device, on_epoch=on_epoch,
                               on_step=on_step)
        if out is not None and result.history:
            write_csv(out / f"fold_{k}" / "log.csv", result.history)
        test = [samples[i] for i in test_idx]
        probs = predict_probabilities(result.model, [s.image for s in test], [s.valid for s in test],
                                      tta=config.tta, batch_size=config.batch_size)
        row = {"fold": k, "n_train": len(train_idx), "n_test": len(test_idx),
               **staging_metrics([s.target for s in test], probs, config.threshold)}
        fold_rows.append(row)
        predictions += [{"case": s.case_id, "fold": k, "t_stage": s.t_stage, "t3_probability": round(float(p), 6)}
                        for s, p in zip(test, probs)]
        if on_fold is not None:
            on_fold(row)
    summary = {m: mean_sd([r[m] for r in fold_rows]) for m in _METRICS}
    method = method_name(config)
    cv = CVResult(method, fold_rows, predictions, staging_cv_row(method, summary), summary)
    if out is not None:
        _write_results(out, cv)
    return cv
