"""Start-up objects leave the cyclic collector's walks; what traffic allocates is still collected."""

import gc
from pathlib import Path

from detectors.registry import build_detectors
from lifeline.catalogue import Catalogue
from lifeline.config import load_config
from lifeline.gc_freeze import freeze_long_lived

DATA = Path(__file__).parent / "data"


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_catalogue_and_detectors_are_frozen_and_later_garbage_is_collected():
    config = load_config(DATA / "city.yaml")
    catalogue = Catalogue(config)
    detectors = build_detectors(catalogue, config.rules)
    binding = next(d for d in detectors.all() if len(d.bindings)).bindings[0]
    assert gc.is_tracked(binding) and any(o is binding for o in gc.get_objects())
    try:
        frozen = freeze_long_lived()
        assert frozen >= len(catalogue)
        walked = gc.get_objects()  # what a full collection walks: the frozen are not in it
        assert not any(o is binding or o is catalogue for o in walked)

        garbage = Cycle()
        del garbage
        assert gc.collect() >= 1  # a cycle made after the freeze is still found and freed
    finally:
        gc.unfreeze()
