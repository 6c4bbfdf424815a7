"""The typer application, shared options and error handling; commands live in one module per group."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from augledger.errors import AugLedgerError, Interrupted

__all__ = ["JsonOpt", "SpecArg", "app", "compile_spec_file", "console", "err_console", "handle_errors"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Reproducible, versioned data augmentation: validate specs, materialise and verify datasets.",
)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

SpecArg = Annotated[Path, typer.Argument(metavar="SPEC", help="Pipeline spec (.yaml, .yml or .json).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def handle_errors(func: F) -> F:
    """Turn augledger errors into a one-paragraph message on stderr and their exit code.

    Exit 1 for errors; 130 / 143 when a run was stopped by SIGINT / SIGTERM (never a traceback).
    """

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Interrupted as exc:
            err_console.print(f"[bold yellow]stopped:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except AugLedgerError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
        except BrokenPipeError:  # `augledger ... | head`: the reader has gone; nothing to say to it
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(141) from None
        except OSError as exc:  # the file system said no (a full disk, a permission, a name too long)
            where = f" ({exc.filename})" if exc.filename else ""
            err_console.print(f"[bold red]error:[/] {escape((exc.strerror or str(exc)) + where)}", highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("[bold yellow]stopped[/] (Ctrl-C)", highlight=False)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def compile_spec_file(path: Path) -> Any:
    """Load and compile a spec file (a :class:`~augledger.Pipeline`)."""
    from augledger.pipeline import compile_spec
    from augledger.spec import load_spec

    return compile_spec(load_spec(path))
