"""Cells that are safe to open in a spreadsheet, and the way back (exports and imports).

Formula injection (OWASP "CSV injection"): a cell starting with `=`, `+`, `-`, `@`, a tab or a
carriage return may be run as a formula by Excel, LibreOffice or Google Sheets. Exports prefix
such a cell with a single quote, which spreadsheets show as text.

Exception, by decision: a cell that is a plain number (`-50`, `+12.5`, `-0.25`) is not
prefixed. Ledger and transaction exports are full of negative points and amounts; a quote
would turn them into text in every spreadsheet, and a plain number cannot run anything.

The escape is reversible: a cell that already starts with quotes followed by one of those
characters gets one more quote, and imports (`unescape_cell`) remove exactly one. So an
exported file imports back to the values that were exported.
"""

from __future__ import annotations

import re

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d+)?|\.\d+)$")


def escape_cell(text: str) -> str:
    """`text` as a spreadsheet shows it literally (see the module docstring)."""
    bare = text.lstrip("'")
    if not bare or not bare.startswith(FORMULA_TRIGGERS):
        return text
    if bare == text and PLAIN_NUMBER.match(text):
        return text
    return "'" + text


def unescape_cell(text: str) -> str:
    """The value an escaped cell stands for: one leading quote removed before a trigger."""
    bare = text.lstrip("'")
    if bare != text and bare.startswith(FORMULA_TRIGGERS):
        return text[1:]
    return text
