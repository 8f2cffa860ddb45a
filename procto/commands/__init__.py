"""Per-model CLI commands.  Each module here adds its verbs to ``procto.cli.train_app`` / ``predict_app`` / ``cv_app``
(e.g. ``@train_app.command("rcsegnext")``).  Modules must stay cheap to import: import torch/MONAI/nnU-Net inside the
command functions, not at module level."""
