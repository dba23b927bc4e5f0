"""Write docs/cli.md from the real ``--help`` output of every command (docs cannot drift)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from typer.testing import CliRunner

from cdrgate.cli import app

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
ENV = {"COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", "_TYPER_FORCE_DISABLE_TERMINAL": "1"}


def _commands(group: Any, prefix: list[str]) -> list[list[str]]:
    found: list[list[str]] = []
    for name, command in sorted(getattr(group, "commands", {}).items()):
        path = [*prefix, name]
        found.append(path)
        found.extend(_commands(command, path))
    return found


def reference() -> str:
    runner = CliRunner()
    root = typer.main.get_command(app)
    parts = [
        "# CLI reference\n",
        "Generated from `--help` by `python scripts/cli_reference.py --write`; "
        "a test fails when it is stale.\n",
        _errors(runner),
    ]
    for path in [[], *_commands(root, [])]:
        result = runner.invoke(app, [*path, "--help"], env=ENV, terminal_width=100)
        title = " ".join(["cdrgate", *path])
        body = "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())
        parts.append(f"## `{title}`\n\n```\n{body}\n```\n")
    return "\n".join(parts)


def _errors(runner: CliRunner) -> str:
    """How errors look, with a real one."""
    example = ["serve", "--port", "99999"]
    result = runner.invoke(app, example, env=ENV, terminal_width=100)
    return (
        "Errors are one line on stderr, `error: ...`, and an exit code (the table is in\n"
        "[README.md](../README.md#command-line)). A usage error (an unknown, malformed or\n"
        "missing option or argument, a value out of range or not one of the choices, an\n"
        "unknown command) exits 2; the line names the option and, where it can, the\n"
        "command's help:\n\n"
        f"```\n$ cdrgate {' '.join(example)}\n{result.stderr.rstrip()}\n```\n"
    )


if __name__ == "__main__":
    if "--write" in sys.argv:
        DOC.write_text(reference())
    else:
        print(reference())
