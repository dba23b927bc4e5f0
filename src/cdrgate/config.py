"""The TOML config file: the settings table's keys, read with the stdlib.

Precedence, highest first: command-line flag, ``CDRGATE_*`` variable, config file, default.
Keys are the setting names (``database``, ``permitted_networks``, ...); a value may be given
in its TOML type (``port = 8088``, ``csv_safe = true``, ``permitted_networks = ["10.0.0.0/8"]``)
or as the string an environment variable would hold.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cdrgate.errors import UsageError
from cdrgate.logsetup import redacted_url
from cdrgate.settings import SETTINGS, Setting, Settings

CONFIG_ENV = "CDRGATE_CONFIG"
Source = Literal["default", "file", "env"]
_BY_NAME = {setting.name: setting for setting in SETTINGS}


def read_config(path: Path) -> dict[str, Any]:
    """The file's settings, parsed and checked; UsageError names the file and the key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in raw.items():
        setting = _BY_NAME.get(key)
        if setting is None:
            known = ", ".join(sorted(_BY_NAME))
            raise UsageError(f"{path}: unknown setting {key!r} (known: {known})")
        try:
            values[key] = _coerce(setting, value)
        except ValueError as exc:
            raise UsageError(f"{path}: {key}: {exc}") from None
    return values


def _coerce(setting: Setting, value: Any) -> Any:
    default = setting.default
    if isinstance(value, str):
        return setting.parse(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return setting.parse(str(value))  # its bounds, as from the environment
    elif isinstance(default, tuple):
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return setting.parse(",".join(value))
    raise ValueError(f"expected {_kind(default)}, got {type(value).__name__}")


def _kind(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, tuple):
        return "a list of strings"
    return "a string"


def load_settings(
    config: Path | None, environ: Mapping[str, str] | None = None, **flags: Any
) -> Settings:
    """Settings from flags > environment > config file > defaults."""
    file_values = read_config(config) if config is not None else {}
    return Settings.from_env(environ, file=file_values, **flags)


def parse_option(option: str, value: str | None, name: str | None = None) -> Any:
    """A ``serve`` flag's text through its setting's own parser (None = not given); ``name``:
    the setting's, when the flag is not named after it."""
    if value is None:
        return None
    setting = _BY_NAME[name or option.removeprefix("--").replace("-", "_")]
    try:
        return setting.parse(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def value_source(
    option: str, given: bool, name: str, config: Path | None, environ: Mapping[str, str]
) -> str:
    """How an error names where setting ``name``'s value came from, as the user wrote it: the
    flag when it was given, else its ``CDRGATE_*`` variable, else the config file's key."""
    setting = _BY_NAME[name]
    if given:
        return option
    if setting.env in environ:
        return setting.env
    return f"{name} in {config}" if config is not None else option


@dataclass(frozen=True)
class ShownSetting:
    name: str
    value: str
    source: Source


def show(config: Path | None, environ: Mapping[str, str]) -> list[ShownSetting]:
    """Each setting's effective value (secrets redacted) and where it came from."""
    file_values = read_config(config) if config is not None else {}
    settings = Settings.from_env(environ, file=file_values)
    rows = []
    for setting in SETTINGS:
        source: Source = "default"
        if setting.env in environ:
            source = "env"
        elif setting.name in file_values:
            source = "file"
        rows.append(
            ShownSetting(setting.name, _display(setting, getattr(settings, setting.name)), source)
        )
    return rows


def _display(setting: Setting, value: Any) -> str:
    if setting.name == "database":
        value = redacted_url(value)
    elif setting.name == "replicas":
        value = tuple(redacted_url(url) for url in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
