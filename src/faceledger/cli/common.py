"""Shared CLI plumbing: exit codes, JSON output, progress bars, confirmation, and turning
errors into one red line."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import date, datetime, time
from enum import Enum, IntEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, NoReturn, ParamSpec, TypeVar

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from faceledger import errors
from faceledger.types import Face

err_console = Console(stderr=True, soft_wrap=True)
P = ParamSpec("P")
R = TypeVar("R")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
]


class ExitCode(IntEnum):
    """What a ``faceledger`` command's exit status means (the README shows this table).

    ====  ===========  =================================================================
    0     ok           the command did what was asked
    1     error        a model, store or other failure (see the red line on stderr)
    2     usage        a bad command line: unknown option, missing or malformed argument
                       (Typer's own), or a destructive command off a terminal without
                       ``--yes``
    3     no_face      no face was found where one was needed
    4     not_found    the collection, person, face or file does not exist
    5     refused      refused by policy: quality too low, several faces, consent or
                       purpose missing, or an enrolment image refused for one of these
    6     conflict     a name already taken, embeddings of another model, a limit reached,
                       a data folder a server owns
    7     bad_input    an unreadable, unsupported or too large image or video, or an
                       invalid argument value
    8     aborted      a confirmation was declined
    ====  ===========  =================================================================

    A batch command (several images) exits with the code its failed images share, or 1
    when they failed for different reasons; its JSON names each image's error.
    """

    OK = 0
    ERROR = 1
    USAGE = 2
    NO_FACE = 3
    NOT_FOUND = 4
    REFUSED = 5
    CONFLICT = 6
    BAD_INPUT = 7
    ABORTED = 8


_EXIT_BY_CLASS: list[tuple[type[errors.FaceledgerError], ExitCode]] = [
    (errors.NoFace, ExitCode.NO_FACE),
    (errors.NotFound, ExitCode.NOT_FOUND),
    (errors.QualityTooLow, ExitCode.REFUSED),
    (errors.MultipleFaces, ExitCode.REFUSED),
    (errors.PurposeRequired, ExitCode.REFUSED),
    (errors.ConsentRequired, ExitCode.REFUSED),
    (errors.Conflict, ExitCode.CONFLICT),
    (errors.InputError, ExitCode.BAD_INPUT),
]
"""Most specific first; any other FaceledgerError is ``ERROR``."""


def exit_code_of(error: errors.FaceledgerError | type[errors.FaceledgerError]) -> ExitCode:
    """The exit code of an error (class or instance), by the table of :class:`ExitCode`."""
    cls = error if isinstance(error, type) else type(error)
    return next((code for klass, code in _EXIT_BY_CLASS if issubclass(cls, klass)), ExitCode.ERROR)


def _codes_by_name() -> dict[str, ExitCode]:
    out: dict[str, ExitCode] = {}
    stack: list[type[errors.FaceledgerError]] = [errors.FaceledgerError]
    while stack:
        cls = stack.pop()
        out.setdefault(cls.code, exit_code_of(cls))
        stack.extend(cls.__subclasses__())
    return out


EXIT_BY_CODE = _codes_by_name()
"""Error ``code`` string (as in an enrolment refusal) -> exit code."""


def exit_code_for(code: str | None) -> ExitCode:
    """The exit code of a machine error code such as ``no_face`` (``ERROR`` if unknown)."""
    return EXIT_BY_CODE.get(code or "", ExitCode.ERROR)


def combined_exit(codes: Iterable[ExitCode]) -> ExitCode:
    """One exit code for several failures: the one they share, else ``ERROR``."""
    distinct = set(codes)
    if not distinct:
        return ExitCode.OK
    return distinct.pop() if len(distinct) == 1 else ExitCode.ERROR


def to_jsonable(value: Any) -> Any:
    """Dataclasses, Pydantic models, NumPy values, dates, enums and paths as JSON types."""
    if isinstance(value, Face):
        return face_json(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {k: to_jsonable(v) for k, v in asdict(value).items()}
    if hasattr(value, "model_dump") and not isinstance(value, type):  # a Pydantic model
        return to_jsonable(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "__fspath__"):
        return str(value)
    return value


def face_json(face: Face) -> dict[str, Any]:
    """A face as JSON: box, landmarks, score, quality (no embedding)."""
    return face.public()


def emit(value: Any) -> None:
    """Write a result to standard output as JSON."""
    typer.echo(json.dumps(to_jsonable(value), indent=2, ensure_ascii=False))


def fail(code: ExitCode, message: str, *, label: str | None = None) -> NoReturn:
    """Print one red line on stderr and exit with ``code``."""
    err_console.print(f"[red]error[/red] ({label or code.name.lower()}): {escape(message)}")
    raise typer.Exit(int(code))


def fail_cleanly(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a FaceledgerError into one red line on stderr and its exit code
    (:class:`ExitCode`)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except errors.FaceledgerError as exc:
            fail(exit_code_of(exc), exc.message, label=exc.code)

    return wrapper


def interactive() -> bool:
    """Whether a person can answer a question (standard input is a terminal)."""
    return sys.stdin.isatty()


def confirm_destructive(action: str, *, yes: bool) -> None:
    """Ask before ``action`` on a terminal; off a terminal refuse unless ``--yes``."""
    if yes:
        return
    if not interactive():
        fail(
            ExitCode.USAGE,
            f"refusing to {action} without confirmation: pass --yes (standard input is "
            "not a terminal, so nobody can be asked)",
            label="confirmation_required",
        )
    if not typer.confirm(f"{action[0].upper()}{action[1:]}? This cannot be undone", err=True):
        fail(ExitCode.ABORTED, "nothing was changed", label="aborted")


IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".heic"}
)
"""Files taken from a folder given to a batch command (files named directly are all taken)."""


def expand_images(paths: Iterable[Path]) -> tuple[list[Path], bool]:
    """Files named, plus the image files under each folder named (recursively, sorted).

    Returns the list and whether it is a batch (more than one path, or any folder).
    """
    out: list[Path] = []
    batch = False
    given = list(paths)
    for path in given:
        if path.is_dir():
            batch = True
            out += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            out.append(path)
    return out, batch or len(given) > 1


@contextmanager
def progress_bar(description: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A ``(done, total)`` callback that drives a rich progress bar on stderr."""
    if not enabled or not err_console.is_terminal:
        yield lambda done, total: None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
