"""Helpers of the CLI tests."""

from __future__ import annotations


def table_rows(text: str) -> list[list[str]]:
    """The cells of every row of the rich tables in ``text`` (header rows included), box
    drawing stripped. A cell that folds over two lines gives two rows."""
    rows = []
    for line in text.splitlines():
        line = line.replace("┃", "│")  # the header row's rule is heavier
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return rows
