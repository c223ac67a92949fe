"""Rule kinds of the hazard domain detectors: specs and parsers."""

from __future__ import annotations

PARSERS: dict = {}
