"""The typer application and what every command module shares: the verb groups, the consoles, the error boundary
and the progress bar.  Command modules import this module; the package root imports the command modules."""

from __future__ import annotations

import functools
from enum import Enum
from typing import Callable

import typer
from rich.console import Console

from procto import __version__
from procto.errors import ProctoError

app = typer.Typer(
    name="procto",
    help="Rectal-cancer imaging AI: segmentation, staging and lymph-node detection in CT and MRI.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

# Model verbs: ``procto prepare <model>``, ``procto pretrain <model>``, ``procto train <model>``,
# ``procto predict <model>``, ``procto cv <model>``.  Each model's commands live in ``procto/cli/<model>.py`` and
# register themselves on these groups.
prepare_app = typer.Typer(help="Write a model's training data set from public data or phantoms.", no_args_is_help=True)
pretrain_app = typer.Typer(help="Self-supervised pre-training of a model.", no_args_is_help=True)
train_app = typer.Typer(help="Train a model (see `procto train <model> --help`).", no_args_is_help=True)
predict_app = typer.Typer(help="Run a trained model on images.", no_args_is_help=True)
cv_app = typer.Typer(help="Cross-validation with the paper's table layout.", no_args_is_help=True)
app.add_typer(prepare_app, name="prepare")
app.add_typer(pretrain_app, name="pretrain")
app.add_typer(train_app, name="train")
app.add_typer(predict_app, name="predict")
app.add_typer(cv_app, name="cv")


def _version(value: bool) -> None:
    if value:
        console.print(f"procto {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """procto: rectal-cancer imaging AI toolkit."""


def error_line(exc: BaseException) -> str:
    """The one line shown for a user-facing error: procto's own message, or ``<file>: <reason>`` for an operating
    system error (a folder that cannot be written, a disk that is full)."""
    if isinstance(exc, ProctoError):
        return str(exc)
    if isinstance(exc, OSError):
        where = exc.filename if exc.filename is not None else ""
        reason = exc.strerror or str(exc)
        return f"{where}: {reason}" if where else reason
    return str(exc)


def friendly_errors(fn: Callable) -> Callable:
    """The CLI's one error boundary: procto's input/output errors and the operating system's file errors become one
    line ``error: <file>: <problem>`` on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ProctoError, OSError) as exc:
            from rich.markup import escape

            err_console.print(f"[red]error:[/red] {escape(error_line(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def progress_bar():
    """A rich progress bar on stderr.  It stays on screen when its block finishes and vanishes when the block fails,
    so that an error is still the one line ``error: <file>: <problem>``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    class _Progress(Progress):
        def __exit__(self, exc_type, exc_val, exc_tb):
            if exc_type is not None:
                self.live.transient = True
            return super().__exit__(exc_type, exc_val, exc_tb)

    return _Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=False,
    )


class Device(str, Enum):
    """``--device`` choices (``auto``: cuda when available, see :func:`procto.util.resolve_device`)."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


def int_list(text: str, what: str) -> list:
    """Non-negative integers from ``text`` (``--fold``/``--folds``; ``all`` allowed for ``--fold``)."""
    from procto.errors import InputError
    from procto.util import parse_list

    words = ("all",) if what == "--fold" else ()
    values = parse_list(text, int, what=what, example="0 or 0,1,2", minimum=0, words=words)
    if values is None:
        raise InputError(f"{what} is empty")
    return list(values)


def epoch_reporter(progress, task):
    """An ``on_epoch(epoch, num_epochs, values)`` callback that moves ``progress``'s ``task`` and shows the loss and
    pseudo Dice."""

    def on_epoch(epoch: int, num_epochs: int, values: dict) -> None:
        dice = values.get("dice_per_class_or_region")
        desc = f"train (loss {values.get('train_losses', float('nan')):.3f}"
        if isinstance(dice, list) and dice:
            desc += ", pseudo Dice " + "/".join(f"{d:.2f}" for d in dice)
        progress.update(task, total=num_epochs, completed=epoch, description=desc + ")")

    return on_epoch
