"""Rule kinds of the domain detectors (issue 8): their parameters and validation.

Each lifeline domain has one module here holding the frozen spec dataclasses and the parsers
of its detector keys (same shape as CONTRACT §2: `id`, `match`, one detector key, levels by
colour); this package only gathers them. The detectors themselves live in `detectors.domain`.
"""

from __future__ import annotations

from lifeline.domain_rules import bridge, elevator, gas, hazard, pipeline

#: detector key -> parser(chk, raw, path) -> spec or None (errors recorded on chk)
DOMAIN_PARSERS = {**gas.PARSERS, **pipeline.PARSERS, **bridge.PARSERS, **elevator.PARSERS, **hazard.PARSERS}
