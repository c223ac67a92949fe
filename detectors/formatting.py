"""Numbers as operators read them in alert messages."""

from __future__ import annotations


def format_number(value: float) -> str:
    """Four significant digits: 21.5, 0.142, 3.2; plain digits up to a million."""
    return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.6g}"


def with_unit(value: float, unit: str) -> str:
    return f"{format_number(value)} {unit}" if unit else format_number(value)
