import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from cdrgate.errors import UsageError
from cdrgate.settings import SETTINGS, Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_settings_table_matches_the_dataclass():
    fields = dataclasses.fields(Settings)
    assert [s.name for s in SETTINGS] == [f.name for f in fields]
    assert [s.default for s in SETTINGS] == [f.default for f in fields]


def test_readme_settings_table_is_generated_from_the_settings():
    """Docs cannot drift: regenerate with `python scripts/settings_table.py --write`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "settings_table", README.parent / "scripts" / "settings_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = README.read_text()
    assert module.readme_with_table(text) == text, "run: python scripts/settings_table.py --write"
    assert all(s.env in text for s in SETTINGS)


def test_environment_then_overrides():
    env = {"CDRGATE_PORT": "9000", "CDRGATE_EMPTY_DOWNLOAD": "header", "CDRGATE_HOST": "::1"}
    settings = Settings.from_env(env, host=None, port=9100)
    assert (settings.port, settings.empty_download, settings.host) == (9100, "header", "::1")


def test_default_bind_is_loopback():
    assert Settings.from_env({}).host == "127.0.0.1"


def test_bad_environment_value_is_a_clear_error():
    with pytest.raises(UsageError, match="CDRGATE_PORT"):
        Settings.from_env({"CDRGATE_PORT": "eighty"})


def test_settings_depend_on_no_layer_that_reads_them():
    # Every layer reads Settings (storage, services, api, cli): settings.py importing one of
    # them would tie the table of defaults to that layer's imports, and invite a cycle.
    probe = (
        "import sys\n"
        "import cdrgate.settings\n"
        "layers = ('cdrgate.storage', 'cdrgate.services', 'cdrgate.api', 'cdrgate.cli')\n"
        "print(sorted(m for m in sys.modules if m.startswith(layers)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("port", ["65536", "99999", "-1"])
def test_a_port_outside_0_to_65535_is_a_clear_error(port):
    # It reached socket.bind and ended `serve` in an OverflowError traceback.
    with pytest.raises(UsageError, match="CDRGATE_PORT: must be a TCP port from 0 to 65535"):
        Settings.from_env({"CDRGATE_PORT": port})
    assert Settings.from_env({"CDRGATE_PORT": "0"}).port == 0


def test_a_number_setting_that_is_no_number_says_so_in_words():
    with pytest.raises(UsageError) as caught:
        Settings.from_env({"CDRGATE_LOCKOUT_FAILURES": "abc"})
    assert str(caught.value) == "CDRGATE_LOCKOUT_FAILURES: not a whole number: 'abc'"
