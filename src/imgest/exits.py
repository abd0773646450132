"""Exit codes of the `imgest` command: one table from exception to exit code and message.

Every command runs under `ImgestGroup`, which looks an escaping exception up in `RULES`
(first match wins), prints `imgest: <message>` on stderr, and exits with the rule's code: an
expected failure (service down, catalog missing, Ray not installed, a bad TOML file) never
prints a traceback. Anything the table does not name is a bug and keeps its traceback.
Classes are named as `module:Class` and looked up only in modules already imported, so the
table imports neither httpx (the `client` extra) nor the storage backends.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperGroup

EXIT_OK = 0
EXIT_FAILED = 1  # the command ran, and some of its items failed
EXIT_USAGE = 2  # bad arguments or settings; also click's own usage errors
EXIT_UNAVAILABLE = 3  # storage, catalog or the imgest server cannot be reached
EXIT_NOT_FOUND = 4  # the catalog or local blob directory the settings name does not exist


@dataclass(frozen=True)
class Rule:
    """Exceptions (as `module:Class`) that exit with `code`; `meaning` is for --help."""

    errors: tuple[str, ...]
    code: int
    meaning: str


RULES: tuple[Rule, ...] = (
    Rule(
        ("imgest.errors:CatalogNotFound",),
        EXIT_NOT_FOUND,
        "no catalog or blob directory where the settings point (`imgest init` makes one)",
    ),
    Rule(
        (
            "imgest.errors:ServiceUnavailable",
            "imgest.storage.base:StoreUnavailableError",
            "imgest.client:ConnectionFailed",
            "imgest.client:Unavailable",
        ),
        EXIT_UNAVAILABLE,
        "the catalog, the blob store or the imgest server cannot be reached",
    ),
    Rule(
        (
            "imgest.errors:ConfigError",
            "imgest.errors:JobError",
            "imgest.errors:ClientError",
            "imgest.storage.base:StoreURLError",
        ),
        EXIT_USAGE,
        "bad arguments or settings (IMGEST_*, IMGEST_CONFIG), unknown model or pipeline, "
        "missing extra (pip install 'imgest[EXTRA]'), no such device",
    ),
)

# Exit codes a command decides itself rather than through an exception.
OWN_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done"),
    (
        EXIT_FAILED,
        "it ran, and some items failed (upload, import, fsck, rescore, export, label, keys)",
    ),
)


def _resolve(name: str) -> type[BaseException] | None:
    module, _, attr = name.partition(":")
    loaded = sys.modules.get(module)
    found = getattr(loaded, attr, None) if loaded is not None else None
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def rule_for(exc: BaseException) -> Rule | None:
    """The first rule naming a class of `exc`, or None (a bug: let it raise)."""
    for rule in RULES:
        if any((cls := _resolve(n)) is not None and isinstance(exc, cls) for n in rule.errors):
            return rule
    return None


def message(exc: BaseException) -> str:
    """What the user reads: the error's public detail, else its text."""
    detail = getattr(exc, "detail", None)
    return str(detail) if detail else str(exc) or type(exc).__name__


def table() -> list[tuple[int, str]]:
    """Every exit code with its meaning, in code order (for --help and docs/cli.md)."""
    return sorted([*OWN_CODES, *((r.code, r.meaning) for r in RULES)])


def epilog() -> str:
    """The exit-code table as `imgest --help` shows it (\\b: click keeps the lines as they are)."""
    lines = [f"  {code}  {meaning}" for code, meaning in table()]
    return "\b\nExit codes (docs/cli.md):\n" + "\n".join(lines)


class ImgestGroup(TyperGroup):
    """The command group every `imgest` command runs under: exceptions go through RULES."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click Context
        """Run the command; an exception the table names exits with its code and message."""
        try:
            return super().invoke(ctx)
        except Exception as exc:  # typer's own Exit and usage errors match no rule
            rule = rule_for(exc)
            if rule is None:
                raise
            typer.echo(f"imgest: {message(exc)}", err=True)
            raise typer.Exit(rule.code) from None
