"""Rule kinds of the elevator domain detectors: specs and parsers."""

from __future__ import annotations

PARSERS: dict = {}
