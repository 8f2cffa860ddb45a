"""Model bundles: a trained model as one portable ``.procto`` file.

>>> from procto.bundle import export_bundle, install_bundle, list_bundles, open_bundle, resolve_model  # doctest: +SKIP
>>> export_bundle("runs/staging", "staging_v1.procto")                 # a run folder (or model.pt / nnU-Net folder)
>>> install_bundle("staging_v1.procto")                                # → $PROCTO_HOME/bundles/staging_v1
>>> open_bundle("staging_v1", task="staging").model_path              # verified; what `--model` takes
>>> resolve_model("staging_v1.procto", "staging")                      # what every `procto predict` verb does

A bundle is a zip: the model (an engine checkpoint ``model/model.pt`` with the run's ``config.json``/``log.csv``, or an
nnU-Net model folder ``model/<Trainer>__<Plans>__<Configuration>/`` with plans.json, dataset.json, the fingerprint
and one checkpoint per fold) and ``manifest.json`` (:mod:`procto.bundle.manifest`: task, architecture, modality,
spacing, labels, training-data summary, validation metrics, procto version, the sha256 of every member).  nnU-Net's
own model zips (``nnUNetv2_export_model_to_zip``) install as well; procto writes their manifest.

Opening one never runs code from it: member names are checked first (no absolute path, ``..``, link, special file or
unlisted member), each member's sha256 while it is extracted, and every weight file loads with
``torch.load(weights_only=True)`` before a predictor sees it; a truncated, tampered or foreign file is one
:class:`~procto.errors.InputError`.  Installed bundles live in ``$PROCTO_HOME/bundles/<name>/`` (default
``~/.procto``), bundle files used directly are extracted once into ``$PROCTO_HOME/cache/``; both are written into a
temporary folder that is renamed into place, so a failure leaves nothing behind.
"""

from __future__ import annotations

from procto.bundle.export import export_bundle
from procto.bundle.manifest import FORMAT_VERSION, SUFFIX, TASKS
from procto.bundle.store import Bundle, bundles_dir, install_bundle, list_bundles, open_bundle, procto_home, \
    resolve_model

__all__ = ["FORMAT_VERSION", "SUFFIX", "TASKS", "Bundle", "bundles_dir", "export_bundle", "install_bundle",
           "list_bundles", "open_bundle", "procto_home", "resolve_model"]
