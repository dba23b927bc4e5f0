import importlib.util
from pathlib import Path

from typer.testing import CliRunner

from cdrgate import __version__
from cdrgate.cli import app

ROOT = Path(__file__).resolve().parents[2]


def reference() -> str:
    spec = importlib.util.spec_from_file_location(
        "cli_reference", ROOT / "scripts" / "cli_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference()


def test_docs_cli_md_is_the_real_help_output():
    assert (ROOT / "docs" / "cli.md").read_text() == reference(), (
        "docs/cli.md is stale: run python scripts/cli_reference.py --write"
    )


def test_version_and_short_help():
    runner = CliRunner()
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout == f"cdrgate {__version__}\n"
    for args in (["-h"], ["api-user", "set", "-h"], ["serve", "-h"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage:" in result.stdout


def test_flags_show_no_type_and_help_texts_have_no_stray_spaces():
    text = reference()
    assert "<bool>" not in text
    assert " ." not in text.replace("...", "")
    assert "[default: (a day past now)]" in text  # sync --until
