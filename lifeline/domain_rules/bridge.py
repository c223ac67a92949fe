"""Rule kinds of the bridge domain detectors: specs and parsers."""

from __future__ import annotations

PARSERS: dict = {}
