"""The TOML config file: precedence flag > env > file > default, and `config show`."""

from __future__ import annotations

import pytest

from cdrgate.config import load_settings, read_config, show
from cdrgate.errors import UsageError
from cdrgate.settings import Settings


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "cdrgate.toml"
    path.write_text(
        'database = "postgresql://cdrgate:s3cret@db.internal/cdr"\n'
        "port = 9000\n"
        "csv_safe = true\n"
        'permitted_networks = ["10.0.0.0/8", "192.0.2.7"]\n'
        'lockout_seconds = "900"\n'
    )
    return path


def test_the_file_sets_values_in_their_toml_types(config_file):
    settings = load_settings(config_file, {})
    assert settings.port == 9000
    assert settings.csv_safe is True
    assert settings.permitted_networks == ("10.0.0.0/8", "192.0.2.7")
    assert settings.lockout_seconds == 900  # a string is parsed as the variable would be
    assert settings.host == Settings().host  # absent keys keep their default


def test_environment_beats_the_file_and_flags_beat_both(config_file):
    environ = {"CDRGATE_PORT": "9100", "CDRGATE_CSV_SAFE": "0"}
    settings = load_settings(config_file, environ, port=9200)
    assert (settings.port, settings.csv_safe) == (9200, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1\n", "unknown setting 'prot'"),
        ('port = "eighty"\n', "port"),
        ("port = true\n", "expected an integer"),
        ("csv_safe = 1\n", "expected true or false"),
        ("permitted_networks = [1]\n", "expected a list of strings"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_a_usage_error_naming_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message):
        read_config(path)


def test_a_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        read_config(tmp_path / "nope.toml")


def test_show_gives_each_value_its_source_and_hides_the_password(config_file):
    rows = {row.name: row for row in show(config_file, {"CDRGATE_PORT": "9100"})}
    assert (rows["port"].value, rows["port"].source) == ("9100", "env")
    assert rows["csv_safe"].source == "file"
    assert rows["host"].source == "default"
    assert "s3cret" not in rows["database"].value and "***" in rows["database"].value
