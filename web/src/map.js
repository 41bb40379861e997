// The map: a base layer from the deployment's tile URL, or a plain background with the
// county's towns when there is none (our machines are offline); each view draws on a layer
// of its own.
import L from './leaflet.js';
import '@geoman-io/leaflet-geoman-free';
import { tip } from './dom.js';

/* global TORCH_TOWNS */
export const COLOURS = {
  present: '#c1121f',
  possible: '#f77f00',
  excluded: '#2a9d8f',
  no_data: '#8d99ae',
  exclusion: '#c1121f',
  inclusion: '#1d70b8',
  track: '#1d3557',
  breach: '#c1121f',
};

const HERTFORDSHIRE = [51.80, -0.24];

export function createMap(el, settings) {
  const map = L.map(el, { zoomControl: true, preferCanvas: false }).setView(HERTFORDSHIRE, 10);
  if (settings.tile_url) {
    L.tileLayer(settings.tile_url, { maxZoom: 19, attribution: settings.attribution }).addTo(map);
  } else {
    el.classList.add('plain');
  }
  const towns = L.layerGroup(
    TORCH_TOWNS.map((t) =>
      L.marker([t.lat, t.lon], {
        interactive: false,
        keyboard: false,
        icon: L.divIcon({ className: 'town', html: t.town, iconSize: null }),
      }),
    ),
  );
  if (!settings.tile_url) towns.addTo(map);
  L.control.scale({ imperial: false }).addTo(map);
  map.pm.setGlobalOptions({ snappable: false, allowSelfIntersection: false });
  map.pm.setLang('en');
  return map;
}

/** A dot for a fix; its radius on the map is its accuracy when zoomed in. */
export function fixDot(lat, lon, colour, title, options = {}) {
  return L.circleMarker([lat, lon], {
    radius: 3, color: colour, weight: 1, fillColor: colour, fillOpacity: 0.9, ...options,
  }).bindTooltip(tip(title));
}

export function fitTo(map, layer, maxZoom = 17) {
  const bounds = layer.getBounds && layer.getBounds();
  if (bounds && bounds.isValid()) map.fitBounds(bounds.pad(0.2), { maxZoom });
}

export { L };
