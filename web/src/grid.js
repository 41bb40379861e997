// British National Grid (EPSG:27700) to WGS84, with the same pinned transformation as the
// server (torch/grid.py): the 7-parameter Helmert (EPSG:1314), then OSGB36 Transverse Mercator.
import proj4 from 'proj4';

const BNG =
  '+proj=tmerc +lat_0=49 +lon_0=-2 +k=0.9996012717 +x_0=400000 +y_0=-100000 ' +
  '+ellps=airy +towgs84=446.448,-125.157,542.06,0.15,0.247,0.842,-20.489 +units=m +no_defs';
const toWgs84 = proj4(BNG, 'WGS84');

/** [lon, lat] of an easting and northing in metres. */
export function gridToLonLat(easting, northing) {
  return toWgs84.forward([easting, northing]);
}

/** [easting, northing] of a longitude and latitude. */
export function lonLatToGrid(lon, lat) {
  return toWgs84.inverse([lon, lat]);
}
