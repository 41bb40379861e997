"""A crime scene given as GeoJSON (WGS84), checked and put on the British National Grid."""

from __future__ import annotations

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
    _check_rings_closed(geojson, field)
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
        raise InvalidInput(f"{field} is not a valid polygon: {explain_validity(geometry)}", field)
    on_grid = transform(lambda x, y, z=None: grid.to_grid(list_of(x), list_of(y)), geometry)
    if not isinstance(on_grid, Point) and on_grid.area > MAX_AREA_M2:
        raise InvalidInput(
            f"{field} covers {on_grid.area / 1e6:.0f} km²; the most is {MAX_AREA_M2 / 1e6:.0f} km²",
            field,
        )
    return on_grid


def _check_rings_closed(geojson: dict[str, Any], field: str) -> None:
    polygons = {
        "Polygon": [geojson.get("coordinates")],
        "MultiPolygon": geojson.get("coordinates"),
    }.get(geojson["type"], [])
    for polygon in polygons or []:
        for ring in polygon or []:
            if isinstance(ring, list) and len(ring) >= 2 and ring[0] != ring[-1]:
                raise InvalidInput(
                    f"{field} has a ring that is not closed: end it at its start", field
                )


def list_of(v: Any) -> list[float]:
    return [float(c) for c in (v if hasattr(v, "__iter__") else [v])]


def to_lonlat(x: float, y: float) -> dict[str, Any]:
    lon, lat = grid.point_from_grid(x, y)
    return {"type": "Point", "coordinates": [round(lon, 7), round(lat, 7)]}
