"""What this process's metrics registry has counted, read by tests that check an attempt is
counted once (``cdrgate_downloads_total``)."""

from __future__ import annotations

from cdrgate import metrics


def downloads_counted(kind: str, outcome: str) -> float:
    """``cdrgate_downloads_total`` for ``kind`` (cdr, recording) and ``outcome``: 0 before the
    first is counted."""
    sample = metrics.REGISTRY.get_sample_value(
        "cdrgate_downloads_total", {"kind": kind, "outcome": outcome}
    )
    return sample or 0.0
