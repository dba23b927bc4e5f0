"""Opt-in spreadsheet safety for downloads (the ``csv_safe`` setting).

A cell that starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which
some spreadsheets strip first) is run as a formula when the file is opened in a spreadsheet.
With ``csv_safe`` on, such cells get a leading apostrophe so they show as text. Off by
default: the device sends raw values, and ``+41…`` numbers must stay byte-identical then.

Rows are stored pre-rendered (the ``line`` column), so this is its own path: it re-reads a
line only when a cell could start with a trigger character.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Generator, Iterator

from cdrgate.cdr import render_csv_line

TRIGGERS = frozenset("=+-@\t\r")
# A cell start (line start or after a comma, optionally quoted) followed by a trigger.
_MAY_NEED = re.compile(r'(?:^|,)"?[=+\-@\t\r]')


def neutralise(cell: str) -> str:
    return "'" + cell if cell[:1] in TRIGGERS else cell


def safe_line(line: str) -> str:
    """The CSV line with every dangerous cell neutralised; unchanged if none is."""
    if _MAY_NEED.search(line) is None:
        return line
    row = next(csv.reader(io.StringIO(line, newline="")), [])
    return render_csv_line([neutralise(cell) for cell in row])


def safe_batches(
    batches: Iterator[list[str]],
) -> Generator[list[str], None, None]:
    try:
        for batch in batches:
            yield [safe_line(line) for line in batch]
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()
