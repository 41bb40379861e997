// Crime scene: who was near this place at this time. The scene is picked on the map or typed
// as latitude/longitude or as a British National Grid easting/northing.
import * as api from './api.js';
import { h, field, problemText, say, tip } from './dom.js';
import { gridToLonLat, lonLatToGrid } from './grid.js';
import { COLOURS, L, fitTo, fixDot } from './map.js';
import { clock, fmt, fromInput, toInput } from './time.js';

const ORDER = ['present', 'possible', 'excluded', 'no_data'];
const LABEL = { present: 'Present', possible: 'Possible', excluded: 'Excluded', no_data: 'No data' };

export const view = { id: 'scene', title: 'Crime scene', roles: ['officer', 'probation', 'supervisor'], mount };

function mount(panel, map) {
  const layer = L.featureGroup().addTo(map);
  const replayLayer = L.layerGroup().addTo(map);
  let scene = null; // [lon, lat]
  let answer = null;

  const inputs = {
    crime: h('input', { id: 'crime-ref', required: true, maxlength: 64, placeholder: '41/12345/26' }),
    reason: h('textarea', { id: 'crime-reason', required: true, minlength: 3, rows: 2,
      placeholder: 'why you need to know' }),
    lat: h('input', { id: 'scene-lat', type: 'number', step: 'any', placeholder: '51.7636' }),
    lon: h('input', { id: 'scene-lon', type: 'number', step: 'any', placeholder: '-0.2235' }),
    easting: h('input', { id: 'scene-easting', type: 'number', step: 'any', placeholder: '523300' }),
    northing: h('input', { id: 'scene-northing', type: 'number', step: 'any', placeholder: '209100' }),
    radius: h('input', { id: 'scene-radius', type: 'number', min: 0, max: 5000, step: 1, value: 200 }),
    from: h('input', { id: 'scene-from', type: 'datetime-local', required: true }),
    to: h('input', { id: 'scene-to', type: 'datetime-local', required: true }),
  };
  const now = new Date();
  inputs.to.value = toInput(now);
  inputs.from.value = toInput(new Date(now.getTime() - 2 * 3600_000));
  const message = h('p', { id: 'scene-message', class: 'message', role: 'status' });
  const results = h('div', { id: 'scene-results' });
  const replay = h('div', { id: 'replay', class: 'replay', hidden: true });

  function setScene(lon, lat, from) {
    scene = [lon, lat];
    if (from !== 'latlon') {
      inputs.lat.value = lat.toFixed(6);
      inputs.lon.value = lon.toFixed(6);
    }
    if (from !== 'grid') {
      const [e, n] = lonLatToGrid(lon, lat);
      inputs.easting.value = e.toFixed(0);
      inputs.northing.value = n.toFixed(0);
    }
    drawScene();
  }

  function drawScene() {
    layer.clearLayers();
    if (!scene) return;
    const radius = Number(inputs.radius.value) || 0;
    L.circle([scene[1], scene[0]], { radius, color: '#1d3557', weight: 2, fillOpacity: 0.08,
      dashArray: '6 4' }).addTo(layer);
    L.circleMarker([scene[1], scene[0]], { radius: 5, color: '#1d3557', fillOpacity: 1 })
      .bindTooltip(tip('scene')).addTo(layer);
  }

  const fromLatLon = () => {
    const lat = Number(inputs.lat.value), lon = Number(inputs.lon.value);
    if (inputs.lat.value && inputs.lon.value && Number.isFinite(lat) && Number.isFinite(lon)) {
      setScene(lon, lat, 'latlon');
      map.setView([lat, lon], Math.max(map.getZoom(), 15));
    }
  };
  const fromGrid = () => {
    const e = Number(inputs.easting.value), n = Number(inputs.northing.value);
    if (inputs.easting.value && inputs.northing.value && Number.isFinite(e) && Number.isFinite(n)) {
      const [lon, lat] = gridToLonLat(e, n);
      setScene(lon, lat, 'grid');
      map.setView([lat, lon], Math.max(map.getZoom(), 15));
    }
  };
  inputs.lat.addEventListener('change', fromLatLon);
  inputs.lon.addEventListener('change', fromLatLon);
  inputs.easting.addEventListener('change', fromGrid);
  inputs.northing.addEventListener('change', fromGrid);
  inputs.radius.addEventListener('input', drawScene);
  const onClick = (e) => setScene(e.latlng.lng, e.latlng.lat, 'map');
  map.on('click', onClick);

  async function run(event) {
    event.preventDefault();
    if (!scene) return say(message, 'Pick the scene: click the map, or type its position.');
    const body = {
      crime_ref: inputs.crime.value.trim(),
      reason: inputs.reason.value.trim(),
      scene: { type: 'Point', coordinates: scene },
      radius_m: Number(inputs.radius.value),
      from: fromInput(inputs.from.value),
      to: fromInput(inputs.to.value),
    };
    say(message, 'Asking…', 'info');
    results.replaceChildren();
    try {
      answer = await api.call('POST', '/v1/proximity', body);
    } catch (err) {
      return say(message, problemText(err));
    }
    say(message, '');
    show(answer);
  }

  function show(a) {
    drawScene();
    const byVerdict = Object.fromEntries(ORDER.map((v) => [v, []]));
    for (const r of a.results) byVerdict[r.verdict].push(r);
    byVerdict.present.sort((x, y) => x.closest_m - y.closest_m);
    byVerdict.possible.sort((x, y) => (x.closest_m ?? 1e9) - (y.closest_m ?? 1e9));
    const counts = h('p', { class: 'counts', id: 'scene-counts' },
      ...ORDER.map((v) => h('span', { class: `badge ${v}` }, `${LABEL[v]} ${byVerdict[v].length}`)));
    const pack = h('button', { type: 'button', id: 'evidence', class: 'secondary', onclick: async () => {
      try {
        const name = await api.download(`/v1/proximity/${a.query_id}/evidence`, 'evidence.zip');
        say(message, `Saved ${name}`, 'info');
      } catch (err) {
        say(message, problemText(err));
      }
    } }, 'Download evidence pack');
    const lists = ORDER.map((v) => {
      const items = byVerdict[v].map((r) => resultItem(r));
      if (v === 'present' || v === 'possible') return h('div', {}, ...items);
      return items.length ? h('details', {}, h('summary', {}, `${LABEL[v]} (${items.length})`), ...items) : null;
    });
    results.replaceChildren(
      h('p', { class: 'muted small' }, `Query ${a.query_id}`), counts, pack, ...lists);
    for (const r of [...byVerdict.present, ...byVerdict.possible]) drawResult(r);
    fitTo(map, layer);
    setUpReplay(a, [...byVerdict.present, ...byVerdict.possible]);
  }

  function resultItem(r) {
    const facts = [
      r.closest_m === null ? 'no fix in the window' : `closest ${r.closest_m} m at ${fmt(r.closest_at)}`,
      r.accuracy_m === null ? null : `accuracy ±${r.accuracy_m} m`,
      `track covers ${Math.round(r.coverage * 100)}% of the window`,
    ].filter(Boolean);
    return h('article', { class: `result ${r.verdict}`, dataset: { subject: r.subject_ref, verdict: r.verdict },
      onclick: () => r.closest_point && map.setView([r.closest_point.coordinates[1], r.closest_point.coordinates[0]], 17) },
    h('header', {}, h('strong', {}, r.subject_ref), h('span', { class: `badge ${r.verdict}` }, LABEL[r.verdict])),
    h('p', { class: 'small' }, facts.join(' · ')),
    h('ul', { class: 'reasons small' }, ...r.reasons.map((s) => h('li', {}, s))),
    r.gaps.length ? h('p', { class: 'small muted' }, `${r.gaps.length} gap(s): ` + r.gaps.map(
      (g) => `${fmt(g.from)} – ${fmt(g.to)}${g.could_reach_scene ? ' (could reach the scene)' : ''}`).join('; ')) : null);
  }

  function drawResult(r) {
    const colour = COLOURS[r.verdict];
    const line = r.fixes.map((f) => [f.lat, f.lon]);
    if (line.length > 1) L.polyline(line, { color: colour, weight: 2, opacity: 0.7 }).addTo(layer);
    for (const f of r.fixes) {
      fixDot(f.lat, f.lon, colour, `${r.subject_ref} ${fmt(f.time)} ±${f.acc ?? '?'} m`).addTo(layer);
    }
    if (r.closest_point) {
      const [lon, lat] = r.closest_point.coordinates;
      L.circleMarker([lat, lon], { radius: 8, color: colour, weight: 3, fillOpacity: 0.4,
        className: `closest ${r.verdict}` })
        .bindTooltip(tip(`${r.subject_ref}: ${LABEL[r.verdict]}, ${r.closest_m} m at ${fmt(r.closest_at)}`))
        .addTo(layer);
    }
  }

  function setUpReplay(a, shown) {
    replayLayer.clearLayers();
    const tracks = shown.filter((r) => r.fixes.length).map((r) => ({
      r, times: r.fixes.map((f) => Date.parse(f.time)),
      marker: L.circleMarker([0, 0], { radius: 7, color: '#000', weight: 2,
        fillColor: COLOURS[r.verdict], fillOpacity: 1 }).bindTooltip(tip(r.subject_ref), { permanent: true, direction: 'right' }),
    }));
    if (!tracks.length) { replay.hidden = true; return; }
    const start = Date.parse(a.request.from), end = Date.parse(a.request.to);
    const slider = h('input', { type: 'range', id: 'replay-time', min: start, max: end, step: 1000, value: start });
    const label = h('span', { class: 'replay-clock' }, clock(start));
    let timer = null;
    const play = h('button', { type: 'button', class: 'secondary', onclick: () => {
      if (timer) { clearInterval(timer); timer = null; play.textContent = 'Play'; return; }
      play.textContent = 'Pause';
      timer = setInterval(() => {
        const next = Number(slider.value) + (end - start) / 300;
        slider.value = next >= end ? start : next;
        draw();
      }, 50);
    } }, 'Play');
    function draw() {
      const t = Number(slider.value);
      label.textContent = clock(t);
      for (const tr of tracks) {
        const at = position(tr, t, a.parameters.max_gap_s * 1000);
        if (at) tr.marker.setLatLng(at).addTo(replayLayer);
        else tr.marker.remove();
      }
    }
    slider.addEventListener('input', draw);
    replay.replaceChildren(h('strong', {}, 'Replay'), play, slider, label);
    replay.hidden = false;
    draw();
  }

  const form = h('form', { id: 'scene-form', onsubmit: run },
    h('h2', {}, 'Who was near this scene?'),
    field('Crime reference', inputs.crime),
    field('Reason', inputs.reason, 'recorded in the audit trail'),
    h('fieldset', {}, h('legend', {}, 'Scene: click the map, or type'),
      h('div', { class: 'row' }, field('Latitude', inputs.lat), field('Longitude', inputs.lon)),
      h('div', { class: 'row' }, field('Easting', inputs.easting), field('Northing', inputs.northing)),
      field('Radius (m)', inputs.radius)),
    h('div', { class: 'row' }, field('From', inputs.from), field('To', inputs.to)),
    h('button', { type: 'submit', id: 'scene-run' }, 'Find subjects'),
    message);
  panel.replaceChildren(form, replay, results);
  return () => {
    map.off('click', onClick);
    layer.remove();
    replayLayer.remove();
  };
}

/** Where a track was at t: interpolated between fixes at most maxGap apart, else nowhere. */
function position(track, t, maxGap) {
  const { times, r } = track;
  if (!times.length || t < times[0] || t > times[times.length - 1]) return null;
  let i = times.findIndex((x) => x >= t);
  if (times[i] === t) return [r.fixes[i].lat, r.fixes[i].lon];
  const a = r.fixes[i - 1], b = r.fixes[i];
  if (times[i] - times[i - 1] > maxGap) return null;
  const k = (t - times[i - 1]) / (times[i] - times[i - 1]);
  return [a.lat + (b.lat - a.lat) * k, a.lon + (b.lon - a.lon) * k];
}
