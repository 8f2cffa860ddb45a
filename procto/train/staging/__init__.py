"""Training protocol of the volumetric T2/T3 staging CNN (f-rMC5 + bilinear encoding + focal/triplet loss).

Where each part lives:

* :mod:`procto.train.staging.config` — :class:`StagingConfig` (the run's settings, saved in checkpoints) and
  :func:`method_name` (the row label of the paper's tables);
* :mod:`procto.preprocess.staging_data` — the data folder (``stages.csv`` + images + rectum/tumour label maps) and
  :func:`load_staging_samples`;
* :mod:`procto.preprocess.staging` — crop, N4, resize, normalisation, representative slices (shared with inference);
* :mod:`procto.preprocess.augment` — the paper's augmentations with MONAI's 2D random transforms;
* :mod:`procto.train.staging_losses` — focal (MONAI's), center and triplet losses;
* :mod:`procto.train.staging.loop` — the training loop (:func:`train_staging`), checkpoints, the log;
* :mod:`procto.train.staging.cv` — cross-validation (:func:`cross_validate_staging`) and its metrics;
* :mod:`procto.infer.staging` — prediction (TTA) and loading a trained model.

What the paper says, and what the protocol does with it:

* Data. "we start our experiment from the x-y localized setting (around the rectum and tumor) and resize along the
  first and second axes to create 256 × 256 × N pixel volumes" and "we apply N4ITK to correct the intensity
  inhomogeneity" — :mod:`procto.preprocess.staging`.
* Augmentation: "elastic transformation, optical distortion, grid distortion, random shift, random scale, random
  rotate, random crop, horizontal flip, CLAHE, random brightness, random contrast, motion blur, median blur, and
  Gaussian blur" — applied slice-consistently (one in-plane deformation for all slices), CLAHE left out
  (:mod:`procto.preprocess.augment`).  Every random draw is seeded by ``(seed, epoch, position in the epoch)``.
* "we perform oversampling" (T2:T3 = 168:399 in the paper) — every epoch the minority class is resampled with
  replacement up to the majority class count.
* "Stochastic Gradient Descent (SGD) with initial learning rate of 0.01 and applied weight decay with ratio (λ)
  0.01" — :class:`torch.optim.SGD` (lr 0.01, weight decay 0.01).  The paper states no momentum and no schedule; we use
  momentum 0.9 (``momentum``) and cosine decay from the initial rate (``schedule``), both configurable.
* Slice-level then volume-level training.  Feature extractors are trained on slice-level labels: "we assign the
  pathologically confirmed cancer stage of an MR volume to all of its representative slice(s)" and "From the outputted
  slice-wise cancer stage probabilities, we choose only the probabilities for the representative slices to train the
  feature extractor".  Radiologists picked "one to three representative slices"; here the ``representative`` slices
  with the largest tumour area are used.  The depth aggregation is then evaluated "Using the best performing
  objective function" on top of that extractor: volume-level training of the whole network (``slice_epochs`` slice-
  level epochs, then ``epochs`` volume-level epochs).  The bilinear feature gets its own linear classifier; as in
  the bilinear-CNN recipe the paper cites (Lin et al.: classifier first, then end-to-end fine-tuning) it is
  initialised by logistic regression on the training volumes' features when the volume level starts
  (``warm_start_head``) and trained at ``head_lr`` (default 100 × ``lr``): its inputs are l2-normalised 65,536-d
  vectors whose directions differ little between volumes, so from a random start at lr 0.01 it would stay at 0.5.
* Loss: focal (γ = 2) + triplet (margin 0.2, batch-hard online mining) — :class:`~procto.train.staging_losses.
  JointStagingLoss` with ``supplementary`` ``"triplet"`` / ``"center"`` / None and ``loss_weight``; the triplet
  loss acts on the representative slices' features (slice level) or the aggregated volume feature (volume level).
* "to report the final predictions performance, we follow the test-time augmentation procedure from Wu et al." —
  the T3 probability is the mean over the identity and the horizontal flip (``tta``).
* "We perform 10-fold cross-validation ... and report the performance score of hold-out set" —
  :func:`cross_validate_staging` (stratified by T stage, seeded) and :func:`format_cv_table` (Tables 2–4 layout:
  Method, AUC, ACC, Recall(T2), Recall(T3)).

Determinism: the model is initialised from ``seed`` and every epoch's sampling and augmentation depend only on
``(seed, epoch)``, so a run resumed from an epoch checkpoint (model, optimizer, scheduler, epoch) ends with the same
weights as an uninterrupted run.
"""

from __future__ import annotations

from procto.infer.staging import predict_probabilities
from procto.metrics.tables import STAGING_CV_COLUMNS as CV_COLUMNS
from procto.metrics.tables import staging_cv_table as format_cv_table
from procto.preprocess.augment import augment_volume
from procto.preprocess.staging import StagingSample, prepare_sample, prepare_volume, representative_slices
from procto.preprocess.staging_data import StagingRecord, find_staging_cases, load_staging_samples, read_stages_csv
from procto.train.staging.config import StagingConfig, method_name
from procto.train.staging.cv import CVResult, cross_validate_staging, staging_metrics
from procto.train.staging.loop import (
    CHECKPOINT_FORMAT,
    TrainResult,
    build_staging_model,
    load_checkpoint,
    save_checkpoint,
    train_staging,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CVResult",
    "CV_COLUMNS",
    "StagingConfig",
    "StagingRecord",
    "StagingSample",
    "TrainResult",
    "augment_volume",
    "build_staging_model",
    "cross_validate_staging",
    "find_staging_cases",
    "format_cv_table",
    "load_checkpoint",
    "load_staging_samples",
    "method_name",
    "predict_probabilities",
    "prepare_sample",
    "prepare_volume",
    "read_stages_csv",
    "representative_slices",
    "save_checkpoint",
    "staging_metrics",
    "train_staging",
]
