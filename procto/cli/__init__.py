"""The ``procto`` command line (typer + rich).

The package root imports the command modules, which add their verbs to the application in :mod:`procto.cli._app`
(one direction: command modules never import this root).  Every verb prints one line ``error: <file>: <problem>``
and exits with status 2 on bad input or an unwritable output; long work shows a progress bar on stderr.

* :mod:`procto.cli.general` — ``phantom``, ``evaluate``, ``demo``
* :mod:`procto.cli.rcsegnext` — ``train|predict|cv rcsegnext``, ``nnunet-trainers``
* :mod:`procto.cli.agcrc` — ``prepare|pretrain|train|predict|cv agcrc``
* :mod:`procto.cli.usam` — ``train|predict usam``
* :mod:`procto.cli.staging` — ``train|predict|cv staging``
* :mod:`procto.cli.cosam` — ``train|predict cosam``
* :mod:`procto.cli.bundle` — ``bundle export|install|list``
* :mod:`procto.cli.report` — ``report``
"""

from procto.cli import agcrc, bundle, cosam, general, rcsegnext, report, staging, usam  # noqa: F401  (each registers its verbs)
from procto.cli._app import app

__all__ = ["app"]
