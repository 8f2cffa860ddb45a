"""Training procto models through nnU-Net v2 from Python: planning/preprocessing, training, cross-validation, and the
trainer classes nnU-Net finds by name.  Generic over the trainers of one table (RCSegNeXt-B/-L and its ablations;
AG-CRC's configurations, sampling variants and AG-SSL pre-training) and over the number of input channels (what the
data set's ``dataset.json`` lists).

These are what ``procto train rcsegnext`` and ``procto cv rcsegnext`` call (AG-CRC's own entry points are
:mod:`procto.train.agcrc`); prediction is :mod:`procto.infer.nnunet`
(re-exported here: ``predict``, ``plan_outputs``, ``NNUNetPredictor``/``RCSegNeXtPredictor``, ``find_model_dir``).

>>> from procto.train.nnunet import train, predict          # doctest: +SKIP
>>> run = train("raw/Dataset501_ProctoPhantomMRI", fold=0, out="runs", epochs=5, iters=50, device="cpu")
>>> predict(run.model_dir, "new_case_0000.nii.gz", "new_case_seg.nii.gz", folds=[0])

Modules:

* :mod:`~procto.train.nnunet.models` — the table trainer key → class name, network, family (light);
* :mod:`~procto.train.nnunet.trainers` — the trainer classes generated from it (imports nnU-Net), on the bases
  :mod:`~procto.train.nnunet.base` (procto network + paper settings) and :mod:`~procto.train.nnunet.agcrc_trainer`
  (AG-CRC's sampling, AF-loss and AG-SSL; patch-centre strategies in :mod:`~procto.train.nnunet.agcrc_data`);
* :mod:`~procto.train.nnunet.options` — the trainers' settings (paper values, environment overrides);
* :mod:`~procto.train.nnunet.dataset` — raw data set check, nnU-Net's folders, planning and preprocessing;
* :mod:`~procto.train.nnunet.run` — :func:`train` in named steps;
* :mod:`~procto.train.nnunet.cv` — :func:`cross_validate` and its CSV tables.

nnU-Net's environment (folders, trainer search path, process count) is :mod:`procto.infer.nnunet_env`.
"""

from procto.infer.nnunet import (
    CHANNEL_SUFFIX,
    DEFAULT_LABELS,
    NNUNetPredictor,
    RCSegNeXtPredictor,
    case_name,
    dataset_labels,
    find_model_dir,
    plan_outputs,
    predict,
)
from procto.infer.nnunet_env import NNUNetFolders, nnunet_environment, register_trainer_path
from procto.train.nnunet.cv import CV_METRICS, CVResult, cross_validate, evaluate_validation, write_cases_csv, \
    write_cv_csv
from procto.train.nnunet.dataset import dataset_id_and_name, plan_and_preprocess, preprocessed_ready, resolve_folders
from procto.train.nnunet.models import CONFIGURATION, PLANS, TRAINER_NAMES, TRAINER_TABLE, model_dir_for, \
    trainer_name_for
from procto.train.nnunet.run import TrainResult, train

__all__ = [
    "CONFIGURATION",
    "PLANS",
    "CHANNEL_SUFFIX",
    "DEFAULT_LABELS",
    "CV_METRICS",
    "TRAINER_TABLE",
    "TRAINER_NAMES",
    "NNUNetFolders",
    "TrainResult",
    "CVResult",
    "NNUNetPredictor",
    "RCSegNeXtPredictor",
    "dataset_id_and_name",
    "dataset_labels",
    "resolve_folders",
    "preprocessed_ready",
    "nnunet_environment",
    "register_trainer_path",
    "plan_and_preprocess",
    "trainer_name_for",
    "model_dir_for",
    "train",
    "predict",
    "find_model_dir",
    "case_name",
    "plan_outputs",
    "cross_validate",
    "evaluate_validation",
    "write_cv_csv",
    "write_cases_csv",
]
