"""Building blocks of configuration validation: located problems and typed field checks.

Each check records a `Problem` (file, line, field, message) instead of raising, so one run
reports every error in a file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lifeline.yamlsource import LineDict, LineList


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration, located in its file."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"



class Checker:
    """Collects problems while the raw YAML tree is turned into a Config."""

    def __init__(self, file: str):
        self.file = file
        self.problems: list[Problem] = []

    def error(self, line: int | None, field_path: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, field_path, message))


def line_of(container: Any, key: Any) -> int | None:
    if isinstance(container, LineDict | LineList):
        return container.line_of(key)
    return None


def mapping(chk: Checker, value: Any, line: int | None, path: str) -> LineDict | None:
    if value is None:
        return LineDict()
    if not isinstance(value, dict):
        chk.error(line, path, f"expected a mapping, got {type(value).__name__}")
        return None
    return value  # type: ignore[return-value]


def number(chk: Checker, value: Any, line: int | None, path: str, *, positive: bool = False) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        chk.error(line, path, f"expected a number, got {value!r}")
        return None
    if not math.isfinite(value):
        chk.error(line, path, f"expected a finite number, got {value!r}")
        return None
    if positive and value <= 0:
        chk.error(line, path, f"must be greater than 0, got {value!r}")
        return None
    return float(value)


def text(chk: Checker, value: Any, line: int | None, path: str) -> str | None:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        chk.error(line, path, f"expected text, got {value!r}")
        return None
    return str(value)


def unknown_keys(chk: Checker, mapping: LineDict, allowed: tuple[str, ...], path: str) -> None:
    for key in mapping:
        if key not in allowed:
            chk.error(mapping.line_of(key), f"{path}.{key}" if path else str(key),
                      f"unknown key (expected one of: {', '.join(allowed)})")
