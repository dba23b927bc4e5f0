"""Opt-in spreadsheet safety for downloads (the ``csv_safe`` setting).

A cell that starts with ``=``, ``+``, ``-`` or ``@`` is run as a formula when the file is
opened in a spreadsheet, and so is one where that character follows leading white space:
Excel and LibreOffice skip spaces, tabs, line breaks and no-break spaces before a formula,
and read the full-width forms (U+FF1D, U+FF0B, U+FF0D, U+FF20: what an East Asian input method
types) as
the ASCII ones. A cell that starts with a tab or carriage return is treated the same (some
programs strip them first). With ``csv_safe`` on, such cells get a leading apostrophe so
they show as text. Off by default: the device sends raw values, and ``+41…`` numbers must
stay byte-identical then.

Rows are stored pre-rendered (the ``line`` column), so this is its own path: it re-reads a
line only when a cell could start with a trigger.
"""

from __future__ import annotations

import csv
import io
import re

from cdrgate.cdr import render_csv_line

FORMULA_STARTS = "=+\\-@\uff1d\uff0b\uff0d\uff20"
# White space a spreadsheet skips before a formula (or strips from the cell).
LEADING_SPACE = " \t\r\n\u00a0\u2000-\u200b\u3000"
_DANGEROUS = re.compile(f"[{LEADING_SPACE}]*[{FORMULA_STARTS}]|[\t\r]")
# A cell start (line start or after a comma, optionally quoted) followed by a trigger.
_MAY_NEED = re.compile(f'(?:^|,)"?[{LEADING_SPACE}{FORMULA_STARTS}]')


def neutralise(cell: str) -> str:
    return "'" + cell if _DANGEROUS.match(cell) else cell


def safe_line(line: str) -> str:
    """The CSV line with every dangerous cell neutralised; unchanged if none is."""
    if _MAY_NEED.search(line) is None:
        return line
    row = next(csv.reader(io.StringIO(line, newline="")), [])
    return render_csv_line([neutralise(cell) for cell in row])
