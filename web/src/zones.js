// Probation: a subject's exclusion and inclusion zones, drawn and edited on the map with
// their schedule and validity, and the subject's track for a day with breaches marked.
import * as api from './api.js';
import { h, field, problemText, say, tip } from './dom.js';
import { COLOURS, L, fitTo, fixDot } from './map.js';
import { fmt, fromInput, toInput } from './time.js';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

export const view = { id: 'zones', title: 'Zones & tracks', roles: ['probation', 'supervisor'], mount };

function mount(panel, map) {
  const zoneLayer = L.featureGroup().addTo(map);
  const trackLayer = L.featureGroup().addTo(map);
  let zones = [];
  let editing = null; // { zone (or null for a new one), layer }

  const subjectSelect = h('select', { id: 'zone-subject', onchange: () => loadSubject() });
  const list = h('div', { id: 'zone-list' });
  const message = h('p', { id: 'zone-message', class: 'message', role: 'status' });
  const trackMessage = h('p', { id: 'track-message', class: 'message', role: 'status' });
  const episodes = h('div', { id: 'track-episodes' });
  const day = h('input', { id: 'track-day', type: 'date', value: toInput(new Date()).slice(0, 10) });

  const f = {
    kind: h('select', { id: 'zone-kind' }, h('option', { value: 'exclusion' }, 'Exclusion (keep out)'),
      h('option', { value: 'inclusion' }, 'Inclusion (stay in: curfew)')),
    label: h('input', { id: 'zone-label', required: true, maxlength: 200, placeholder: "victim's street" }),
    shape: h('select', { id: 'zone-shape' }, h('option', { value: 'Polygon' }, 'Polygon'),
      h('option', { value: 'Circle' }, 'Circle')),
    always: h('input', { id: 'zone-always', type: 'checkbox', checked: true, onchange: () => toggleSchedule() }),
    start: h('input', { id: 'zone-start', type: 'time', value: '19:00' }),
    end: h('input', { id: 'zone-end', type: 'time', value: '07:00' }),
    validFrom: h('input', { id: 'zone-valid-from', type: 'datetime-local' }),
    validUntil: h('input', { id: 'zone-valid-until', type: 'datetime-local' }),
  };
  const dayBoxes = DAYS.map((d) => h('input', { type: 'checkbox', value: d, checked: true, dataset: { day: d } }));
  const schedule = h('div', { class: 'schedule', hidden: true },
    h('div', { class: 'days' }, ...DAYS.map((d, i) => h('label', { class: 'day' }, dayBoxes[i], d))),
    h('div', { class: 'row' }, field('From', f.start), field('Until', f.end)),
    h('span', { class: 'hint' }, 'UK local time; an end before the start runs past midnight'));
  const toggleSchedule = () => { schedule.hidden = f.always.checked; };
  const drawButton = h('button', { type: 'button', id: 'zone-draw', class: 'secondary', onclick: () => startDrawing() },
    'Draw on the map');
  const saveButton = h('button', { type: 'submit', id: 'zone-save' }, 'Save zone');
  const cancelButton = h('button', { type: 'button', class: 'link', onclick: () => resetForm() }, 'Cancel');
  const formTitle = h('h3', {}, 'New zone');
  const form = h('form', { id: 'zone-form', onsubmit: save },
    formTitle, field('Kind', f.kind), field('Label', f.label), field('Shape', f.shape), drawButton,
    h('label', { class: 'check' }, f.always, 'Always (no schedule)'), schedule,
    h('div', { class: 'row' }, field('Valid from', f.validFrom, 'empty: now'),
      field('Valid until', f.validUntil, 'empty: open-ended')),
    h('div', { class: 'row' }, saveButton, cancelButton), message);

  function onCreate(e) {
    map.pm.disableDraw();
    if (editing && editing.layer) editing.layer.remove();
    editing = { zone: editing ? editing.zone : null, layer: e.layer };
    e.layer.addTo(zoneLayer);
    e.layer.pm.enable();
    say(message, 'Drawn. Drag the corners to adjust, then save.', 'info');
  }
  map.on('pm:create', onCreate);

  function startDrawing() {
    if (editing && editing.layer && !editing.zone) { editing.layer.remove(); editing.layer = null; }
    map.pm.enableDraw(f.shape.value, { pathOptions: { color: COLOURS[f.kind.value] } });
    say(message, f.shape.value === 'Circle' ? 'Click the centre, then drag out the radius.'
      : 'Click each corner; click the first corner again to finish.', 'info');
  }

  function geometryOf(layer) {
    if (layer instanceof L.Circle) {
      const c = layer.getLatLng();
      return { geometry: { type: 'Point', coordinates: [c.lng, c.lat] }, radius_m: Math.round(layer.getRadius() * 10) / 10 };
    }
    return { geometry: layer.toGeoJSON().geometry, radius_m: null };
  }

  async function save(event) {
    event.preventDefault();
    if (!subjectSelect.value) return say(message, 'Choose a subject first.');
    if (!editing || !editing.layer) return say(message, 'Draw the zone on the map first.');
    const days = dayBoxes.filter((b) => b.checked).map((b) => b.value);
    const body = {
      kind: f.kind.value,
      label: f.label.value.trim(),
      ...geometryOf(editing.layer),
      schedule: f.always.checked ? null : [{ days, start: f.start.value, end: f.end.value }],
      valid_from: fromInput(f.validFrom.value),
      valid_until: fromInput(f.validUntil.value),
    };
    try {
      const zone = editing.zone
        ? await api.call('PUT', `/v1/zones/${editing.zone.id}`, body)
        : await api.call('POST', `/v1/subjects/${subjectSelect.value}/zones`, body);
      resetForm();
      say(message, `Saved zone ${zone.id} (version ${zone.version}).`, 'info');
      await loadZones();
    } catch (err) {
      say(message, problemText(err));
    }
  }

  function resetForm() {
    map.pm.disableDraw();
    if (editing && editing.layer) editing.layer.pm.disable();
    if (editing && editing.layer && !editing.zone) editing.layer.remove();
    editing = null;
    formTitle.textContent = 'New zone';
    form.reset();
    toggleSchedule();
    say(message, '');
    drawZones();
  }

  function edit(zone) {
    resetForm();
    formTitle.textContent = `Edit zone ${zone.id}: ${zone.label}`;
    f.kind.value = zone.kind;
    f.label.value = zone.label;
    f.shape.value = zone.radius_m ? 'Circle' : 'Polygon';
    f.always.checked = !zone.schedule;
    if (zone.schedule && zone.schedule.length) {
      const w = zone.schedule[0];
      for (const b of dayBoxes) b.checked = w.days.includes(b.value);
      f.start.value = w.start;
      f.end.value = w.end;
    }
    toggleSchedule();
    f.validFrom.value = toInput(new Date(zone.valid_from));
    f.validUntil.value = zone.valid_until ? toInput(new Date(zone.valid_until)) : '';
    const layer = zoneLayer.getLayers().find((l) => l.zoneId === zone.id);
    editing = { zone, layer };
    if (layer) { layer.pm.enable(); map.fitBounds(layer.getBounds().pad(0.3)); }
    say(message, 'Drag the corners to change the area, or draw it again; then save.', 'info');
  }

  async function remove(zone) {
    if (!confirm(`End zone "${zone.label}" from now? Its versions are kept.`)) return;
    try {
      await api.call('DELETE', `/v1/zones/${zone.id}`);
      say(message, `Zone ${zone.id} ended.`, 'info');
      await loadZones();
    } catch (err) {
      say(message, problemText(err));
    }
  }

  function drawZones() {
    zoneLayer.clearLayers();
    for (const z of zones) {
      const style = { color: COLOURS[z.kind], weight: 2, fillOpacity: 0.15 };
      const layer = z.radius_m
        ? L.circle([z.geometry.coordinates[1], z.geometry.coordinates[0]], { radius: z.radius_m, ...style })
        : L.geoJSON(z.geometry, { style }).getLayers()[0];
      layer.zoneId = z.id;
      layer.bindTooltip(tip(`${z.kind}: ${z.label}`)).addTo(zoneLayer);
    }
  }

  function scheduleText(z) {
    if (!z.schedule) return 'always';
    return z.schedule.map((w) => `${w.days.join(', ')} ${w.start}–${w.end}`).join('; ');
  }

  async function loadZones() {
    zones = await api.call('GET', `/v1/subjects/${subjectSelect.value}/zones`);
    zones = zones.filter((z) => !z.deleted);
    drawZones();
    list.replaceChildren(...(zones.length ? zones.map((z) => h('article', { class: `zone ${z.kind}`, dataset: { zone: z.id } },
      h('header', {}, h('strong', {}, z.label), h('span', { class: `badge ${z.kind}` }, z.kind)),
      h('p', { class: 'small' }, `${scheduleText(z)} · valid ${fmt(z.valid_from)} – ${z.valid_until ? fmt(z.valid_until) : 'open-ended'} · version ${z.version}`),
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'secondary', onclick: () => edit(z) }, 'Edit'),
        h('button', { type: 'button', class: 'link danger', onclick: () => remove(z) }, 'End')))) : [h('p', { class: 'muted' }, 'No zones.')]));
    if (zones.length) fitTo(map, zoneLayer);
  }

  async function loadSubject() {
    resetForm();
    trackLayer.clearLayers();
    episodes.replaceChildren();
    if (!subjectSelect.value) return;
    try {
      await loadZones();
    } catch (err) {
      say(message, problemText(err));
    }
  }

  async function showTrack() {
    if (!subjectSelect.value || !day.value) return say(trackMessage, 'Choose a subject and a day.');
    const start = new Date(`${day.value}T00:00`), end = new Date(start.getTime() + 86400_000);
    const q = `from=${encodeURIComponent(start.toISOString())}&to=${encodeURIComponent(end.toISOString())}`;
    try {
      const [track, found] = await Promise.all([
        api.call('GET', `/v1/subjects/${subjectSelect.value}/track?${q}&format=geojson`),
        api.call('GET', `/v1/subjects/${subjectSelect.value}/breaches?${q}`),
      ]);
      drawTrack(track, found);
    } catch (err) {
      say(trackMessage, problemText(err));
    }
  }

  function drawTrack(track, found) {
    trackLayer.clearLayers();
    const [line, ...points] = track.features;
    const inBreach = (t) => found.some((e) => t >= Date.parse(e.entered_at) && (!e.left_at || t <= Date.parse(e.left_at)));
    // one line per stretch of track: never drawn across a gap, where the route is unknown
    if (line.geometry.coordinates.length > 0) {
      L.geoJSON(line, { style: { color: COLOURS.track, weight: 2, opacity: 0.6 } }).addTo(trackLayer);
    }
    let marked = 0;
    for (const p of points) {
      const [lon, lat] = p.geometry.coordinates;
      const breach = inBreach(Date.parse(p.properties.time));
      marked += breach ? 1 : 0;
      fixDot(lat, lon, breach ? COLOURS.breach : COLOURS.track,
        `${fmt(p.properties.time)} ±${p.properties.acc ?? '?'} m${breach ? ' (in breach)' : ''}`,
        breach ? { radius: 5, className: 'breach-fix' } : {})
        .addTo(trackLayer);
    }
    const gaps = line.properties.gaps.length;
    say(trackMessage, `${points.length} fixes` + (gaps ? `, ${gaps} gap(s) with no track` : '') +
      `; ${found.length} breach episode(s), ${marked} fixes marked.`, 'info');
    episodes.replaceChildren(...found.map((e) => h('article', { class: 'episode' },
      h('strong', {}, `${e.kind} breach: ${e.zone_label}`),
      h('p', { class: 'small' }, `${fmt(e.entered_at)} – ${e.left_at ? fmt(e.left_at) : 'ongoing'} · ` +
        `${e.fixes_inside} fixes inside · deepest ${e.deepest_m} m · found ${e.detection}`))));
    if (points.length) fitTo(map, trackLayer);
  }

  panel.replaceChildren(
    h('h2', {}, 'Zones and tracks'),
    field('Subject', subjectSelect),
    list, form,
    h('h3', {}, 'Track for a day'),
    h('div', { class: 'row' }, field('Day', day),
      h('button', { type: 'button', id: 'track-show', class: 'secondary', onclick: showTrack }, 'Show track')),
    trackMessage, episodes);

  api.call('GET', '/v1/subjects').then((subjects) => {
    subjectSelect.replaceChildren(h('option', { value: '' }, 'Choose a subject…'),
      ...subjects.map((s) => h('option', { value: s.id }, s.device ? `${s.ref} (${s.device})` : s.ref)));
  }).catch((err) => say(message, problemText(err)));

  return () => {
    map.off('pm:create', onCreate);
    map.pm.disableDraw();
    zoneLayer.remove();
    trackLayer.remove();
  };
}
