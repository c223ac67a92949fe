"""REST: the offline base map of the city for the control-room map.

The base is a GeoJSON FeatureCollection named `districts.geojson` beside the configuration
file (the demo city ships one: `lifeline/demo/districts.geojson`). No tile server, no
download: control rooms are often air-gapped. Features are split by their `kind` property:
`district` polygons (outlines, and the areas the risk view colours) and everything else
(`water` polygons, `river` and `road` lines) as background.

A district feature's `id` property is the value sensors carry in their `district`
catalogue field; `name` and `name_zh` are its labels.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from fastapi import APIRouter, Request

from dashboard.access import Viewer

log = logging.getLogger("lifeline.map")

router = APIRouter(prefix="/api/map", tags=["map"])

BASE_FILE = "districts.geojson"
MAX_BASE_BYTES = 20 * 1024 * 1024


class BaseMap:
    """The parsed base file, re-read only when its modification time changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[str, int, int] | None = None
        self._body: dict = {"districts": None, "base": None, "error": None}

    def load(self, path: Path | None) -> dict:
        try:
            stat = path.stat() if path is not None else None
            key = (str(path), stat.st_mtime_ns, stat.st_size) if stat is not None else None
        except OSError:
            key = None
        with self._lock:
            if key != self._key:
                self._key = key
                self._body = _read(path) if key is not None else {"districts": None, "base": None, "error": None}
            return self._body


def _read(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_BASE_BYTES:
            raise ValueError(f"larger than {MAX_BASE_BYTES // (1024 * 1024)} MiB")
        geo = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(geo, dict) or geo.get("type") != "FeatureCollection" \
                or not isinstance(geo.get("features"), list):
            raise ValueError("not a GeoJSON FeatureCollection")
    except (OSError, ValueError) as exc:
        log.warning("map base %s ignored: %s", path, exc)
        return {"districts": None, "base": None, "error": f"{path.name}: {exc}"}
    districts, base = [], []
    for feature in geo["features"]:
        if not isinstance(feature, dict) or not isinstance(feature.get("geometry"), dict):
            continue
        properties = feature.get("properties") or {}
        (districts if properties.get("kind", "district") == "district" else base).append(feature)
    return {"districts": _collection(districts), "base": _collection(base), "error": None,
            "name": geo.get("name")}


def _collection(features: list[dict]) -> dict | None:
    return {"type": "FeatureCollection", "features": features} if features else None


def base_path(request: Request) -> Path | None:
    config = request.app.state.context.config
    source = getattr(config, "source", None)
    return Path(source).parent / BASE_FILE if source else None


@router.get("")
def city_map(request: Request, principal: Viewer) -> dict:
    """`{"districts": FeatureCollection | null, "base": FeatureCollection | null, "error": str | null}`."""
    state = request.app.state
    if not hasattr(state, "base_map"):
        state.base_map = BaseMap()  # one cache per app, created on first use
    return state.base_map.load(base_path(request))
