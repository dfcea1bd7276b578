"""Plain-text tables for the terminal and for Markdown files (no dependency beyond the stdlib)."""

from __future__ import annotations


def render(header: list[str], body: list[list[str]], numeric: list[bool], fmt: str = "table") -> str:
    """``table``: columns aligned with two spaces; ``markdown``: a pipe table. Numeric columns
    are right-aligned (and marked so in Markdown's rule line)."""
    widths = [max([3, len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]

    def cells(values: list[str]) -> list[str]:
        return [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]

    if fmt == "markdown":
        rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric)]
        lines = ["| " + " | ".join(cells(r)) + " |" for r in [header, rule, *body]]
    else:
        rule = ["-" * w for w in widths]
        lines = ["  ".join(cells(r)).rstrip() for r in [header, rule, *body]]
    return "\n".join(lines) + "\n"
