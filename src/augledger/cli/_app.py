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

__all__ = [
    "JsonOpt", "RegistryOpt", "RequireApprovedOpt", "SpecArg", "app", "compile_spec_file", "console", "err_console",
    "handle_errors", "resolve_spec_arg",
]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Reproducible, versioned data augmentation: validate specs, materialise and verify datasets.",
)

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])

SpecArg = Annotated[str, typer.Argument(
    metavar="SPEC|REF",
    help="Pipeline spec file (.yaml, .yml or .json), or a registry REF: NAME@VERSION or NAME@ALIAS (e.g. digits@production).",
    show_default=False,
)]
RegistryOpt = Annotated[str | None, typer.Option(
    "--registry", metavar="PATH|URL", envvar="AUGLEDGER_REGISTRY",
    help="The registry: an SQLite file, or postgresql://user@host/db (default .augledger/registry.db).",
    show_default=False,
)]
RequireApprovedOpt = Annotated[bool, typer.Option(
    "--require-approved", envvar="AUGLEDGER_REQUIRE_APPROVED",
    help="Refuse any spec that is not an approved registry version.",
)]
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


def _print_version(value: bool) -> None:
    if value:
        from augledger._version import __version__

        typer.echo(f"augledger {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = False,
    registry: RegistryOpt = None,
    require_approved: RequireApprovedOpt = False,
) -> None:
    # Commands read these where they resolve a SPEC|REF (resolve_spec_arg): one place, every command.
    if registry:
        os.environ["AUGLEDGER_REGISTRY"] = registry
    if require_approved:
        os.environ["AUGLEDGER_REQUIRE_APPROVED"] = "1"
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def resolve_spec_arg(spec: str | Path, *, require_approved: bool = False, seed: int | None = None,
                     lookup: bool = False, allow_retired: bool = False) -> tuple[Any, Any]:
    """Resolve a SPEC|REF argument and compile it: ``(SpecSource, Pipeline)``.

    A deprecated version's warning is printed as a warning line (the command goes on). ``seed``
    replaces the spec's seed (not part of the fingerprint: the same version, another draw).
    ``lookup`` and ``allow_retired``: see :func:`augledger.registry.resolve_spec`.
    """
    import dataclasses
    import warnings

    from augledger.errors import DeprecatedVersionWarning
    from augledger.registry.refs import resolve_spec

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeprecatedVersionWarning)
        source = resolve_spec(spec, require_approved=True if require_approved else None, lookup=lookup,
                              allow_retired=allow_retired)
    for w in caught:
        err_console.print(f"[bold yellow]warning:[/] {escape(str(w.message))}", highlight=False)
    if seed is not None:
        source = dataclasses.replace(source, spec=source.spec.model_copy(update={"seed": seed}))
    return source, source.compile()


def compile_spec_file(spec: str | Path, *, allow_retired: bool = False) -> Any:
    """Load and compile a spec file or registry REF (a :class:`~augledger.Pipeline`)."""
    return resolve_spec_arg(spec, allow_retired=allow_retired)[1]
