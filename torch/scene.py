"""A crime scene given as GeoJSON (WGS84), checked and put on the British National Grid."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from shapely import Point
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import transform
from shapely.validation import explain_validity

from torch import grid
from torch.errors import InvalidInput

KINDS = ("Point", "Polygon", "MultiPolygon")
MAX_AREA_M2 = 100e6  # 100 km²: a scene, not a county


def to_grid(
    geojson: Any, area: tuple[float, float, float, float], field: str = "scene"
) -> BaseGeometry:
    """The scene in grid metres; InvalidInput says what is wrong with it."""
    if not isinstance(geojson, dict) or geojson.get("type") not in KINDS:
        raise InvalidInput(f"{field} must be a GeoJSON Point, Polygon or MultiPolygon", field)
    _check_coordinates(geojson, field)
    try:
        geometry = shape(geojson)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as err:
        raise InvalidInput(f"{field} coordinates are not valid GeoJSON: {err}", field) from None
    if geometry.is_empty:
        raise InvalidInput(f"{field} is empty", field)
    west, south, east, north = area
    minx, miny, maxx, maxy = geometry.bounds
    if minx < west or maxx > east or miny < south or maxy > north:
        raise InvalidInput(
            f"{field} lies outside the service area (lon {west}..{east}, lat {south}..{north}); "
            "coordinates are [longitude, latitude]",
            field,
        )
    if not geometry.is_valid:
        raise InvalidInput(f"{field} is not a valid polygon: {_why(geometry)}", field)
    on_grid = transform(lambda x, y, z=None: grid.to_grid(list_of(x), list_of(y)), geometry)
    if not isinstance(on_grid, Point) and on_grid.area > MAX_AREA_M2:
        raise InvalidInput(
            f"{field} covers {on_grid.area / 1e6:.0f} km²; the most is {MAX_AREA_M2 / 1e6:.0f} km²",
            field,
        )
    return on_grid


def _why(geometry: BaseGeometry) -> str:
    """GEOS's reason for an invalid geometry, its place written as a GeoJSON position:
    "Self-intersection[-0.335 51.755]" becomes "Self-intersection at [-0.335, 51.755]"."""
    reason = explain_validity(geometry)
    found = re.fullmatch(r"(.*)\[(\S+) (\S+)\]", reason)
    return reason if found is None else f"{found[1]} at [{found[2]}, {found[3]}]"


def _check_coordinates(geojson: dict[str, Any], field: str) -> None:
    """Say what is wrong with the shape of the coordinates, in GeoJSON's terms, before
    the geometry library is given them (its own messages name its internals)."""
    if "coordinates" not in geojson:
        raise InvalidInput(f"{field} has no coordinates", field)
    coordinates = geojson["coordinates"]
    if geojson["type"] == "Point":
        _check_position(coordinates, field)
        return
    polygons = [coordinates] if geojson["type"] == "Polygon" else coordinates
    if not isinstance(polygons, list) or not polygons:
        raise InvalidInput(f"{field}: a MultiPolygon's coordinates are a list of polygons", field)
    for polygon in polygons:
        if not isinstance(polygon, list) or not polygon:
            raise InvalidInput(
                f"{field}: a polygon's coordinates are a list of rings, the outer ring first",
                field,
            )
        for ring in polygon:
            _check_ring(ring, field)


def _check_ring(ring: Any, field: str) -> None:
    if not isinstance(ring, list):
        raise InvalidInput(f"{field}: a ring is a list of positions, found {_shown(ring)}", field)
    for position in ring:
        _check_position(position, field)
    if len(ring) < 4:
        raise InvalidInput(
            f"{field} has a ring of {len(ring)} positions; a ring needs at least 4, "
            "the last the same as the first",
            field,
        )
    if ring[0] != ring[-1]:
        raise InvalidInput(f"{field} has a ring that is not closed: end it at its start", field)


def _check_position(position: Any, field: str) -> None:
    if (
        not isinstance(position, list)
        or len(position) not in (2, 3)
        or not all(_finite(c) for c in position)
    ):
        raise InvalidInput(
            f"{field}: a position is [longitude, latitude] in decimal degrees, "
            f"found {_shown(position)}",
            field,
        )


def _finite(c: Any) -> bool:
    return isinstance(c, int | float) and not isinstance(c, bool) and math.isfinite(c)


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def list_of(v: Any) -> list[float]:
    return [float(c) for c in (v if hasattr(v, "__iter__") else [v])]


def to_lonlat(x: float, y: float) -> dict[str, Any]:
    lon, lat = grid.point_from_grid(x, y)
    return {"type": "Point", "coordinates": [round(lon, 7), round(lat, 7)]}
