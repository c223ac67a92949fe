"""Rule kinds of the pipeline domain detectors: specs and parsers."""

from __future__ import annotations

PARSERS: dict = {}
