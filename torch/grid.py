"""WGS84 <-> British National Grid (EPSG:27700), with one pinned transformation.

The transformation is fixed, not chosen by PROJ at run time, so that the same
fix always lands on the same grid position whatever PROJ grids a machine has:
WGS84 to OSGB36 by the 7-parameter Helmert transformation (EPSG:1314, about
2 m accurate in Great Britain), then OSGB36 Transverse Mercator. It is the
definition PostGIS holds for SRID 27700, so positions computed here and by
ST_Transform in the database agree to the millimetre.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from functools import cache

import numpy as np
from pyproj import Transformer

SRID = 27700
BNG = (
    "+proj=tmerc +lat_0=49 +lon_0=-2 +k=0.9996012717 +x_0=400000 +y_0=-100000 "
    "+ellps=airy +towgs84=446.448,-125.157,542.06,0.15,0.247,0.842,-20.489 +units=m +no_defs"
)


@cache
def _to_grid() -> Transformer:
    return Transformer.from_crs("EPSG:4326", BNG, always_xy=True)


@cache
def _from_grid() -> Transformer:
    return Transformer.from_crs(BNG, "EPSG:4326", always_xy=True)


def to_grid(lons: Sequence[float], lats: Sequence[float]) -> tuple[array[float], array[float]]:
    """Eastings and northings (metres) of many WGS84 points at once."""
    xs, ys = _to_grid().transform(array("d", lons), array("d", lats))
    return xs, ys


# Stored fixes lie on a lattice of 1/1024 m (under a millimetre, far below any fix's
# accuracy): a position less another within 16 km of it is then exact in float4, which
# lets a query measure tracks exactly from their compact sketches (torch.approach).
LATTICE = 1024.0


def fix_positions(lons: Sequence[float], lats: Sequence[float]) -> tuple[list[float], list[float]]:
    """Grid positions of fixes to be stored: projected, then put on the lattice."""
    xs, ys = to_grid(lons, lats)
    return on_lattice(xs), on_lattice(ys)


def on_lattice(values: Sequence[float]) -> list[float]:
    a = np.round(np.asarray(values, dtype=np.float64) * LATTICE) / LATTICE
    return a.tolist()  # type: ignore[no-any-return]


def point_to_grid(lon: float, lat: float) -> tuple[float, float]:
    x, y = _to_grid().transform(lon, lat)
    return float(x), float(y)


def point_from_grid(easting: float, northing: float) -> tuple[float, float]:
    """(lon, lat) of a grid position."""
    lon, lat = _from_grid().transform(easting, northing)
    return float(lon), float(lat)
