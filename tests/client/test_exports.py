"""The public front door: ``cdrgate.client.__all__`` is sorted, complete and importable."""

from __future__ import annotations

import types

import cdrgate.client as client


def test_all_is_sorted():
    assert client.__all__ == sorted(client.__all__)


def test_all_lists_every_public_name_and_nothing_else():
    # dir(), not vars(): the names load on first use (the package's __getattr__).
    public = {
        name
        for name in dir(client)
        if not name.startswith("_") and not isinstance(getattr(client, name), types.ModuleType)
    }
    assert public == set(client.__all__)


def test_every_error_is_a_client_error():
    from cdrgate.errors import CdrgateError

    errors = [
        getattr(client, name)
        for name in client.__all__
        if name.endswith(("Error", "Failed", "Out"))
    ]
    assert errors and all(issubclass(e, client.ClientError) for e in errors)
    assert issubclass(client.ClientError, CdrgateError)
