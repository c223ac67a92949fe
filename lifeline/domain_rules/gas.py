"""Rule kinds of the gas domain detectors: specs and parsers."""

from __future__ import annotations

PARSERS: dict = {}
