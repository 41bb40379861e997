// Pattern of life: a subject's frequent places and weekly routine (probation, supervisors),
// and the cohort's hotspots with an hour-of-the-day slider (supervisors only).
import * as api from './api.js';
import { h, field, problemText, say, tip } from './dom.js';
import { L, fitTo } from './map.js';

/* global TORCH_TOWNS */

export const view = { id: 'patterns', title: 'Patterns', roles: ['probation', 'supervisor'], mount };

const WEEKDAYS = ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];
const PLACE_COLOURS = ['#1d70b8', '#f77f00', '#6a4c93', '#2a9d8f', '#e76f51', '#8d99ae'];
const dayInput = (daysAgo) => new Date(Date.now() - daysAgo * 86400e3).toISOString().slice(0, 10);

function mount(panel, map, me) {
  const placeLayer = L.featureGroup().addTo(map);
  const hotLayer = L.featureGroup().addTo(map);
  const subject = h('select', { id: 'pattern-subject' });
  const from = h('input', { id: 'pattern-from', type: 'date', value: dayInput(28) });
  const to = h('input', { id: 'pattern-to', type: 'date', value: dayInput(0) });
  const message = h('p', { id: 'pattern-message', class: 'message', role: 'status' });
  const places = h('ol', { id: 'pattern-places', class: 'places' });
  const routine = h('div', { id: 'pattern-routine' });
  const subjectForm = h('form', { id: 'pattern-form', onsubmit: showSubject },
    h('h3', {}, 'A subject\'s places and week'), field('Subject', subject),
    h('div', { class: 'row' }, field('From', from), field('To', to)),
    h('button', { type: 'submit' }, 'Show'), message, places, routine);

  const hotFrom = h('input', { id: 'hot-from', type: 'date', value: dayInput(7) });
  const hotTo = h('input', { id: 'hot-to', type: 'date', value: dayInput(0) });
  const district = h('select', { id: 'hot-district' }, h('option', { value: '' }, 'All districts'),
    ...[...new Set(TORCH_TOWNS.map((t) => t.district))].map((d) => h('option', { value: d }, d)));
  const hour = h('input', { id: 'hot-hour', type: 'range', min: '0', max: '24', value: '24', oninput: drawHour });
  const hourLabel = h('span', { id: 'hot-hour-label' }, 'all day');
  const hotMessage = h('p', { id: 'hot-message', class: 'message', role: 'status' });
  const hotForm = h('form', { id: 'hot-form', onsubmit: loadHotspots },
    h('h3', {}, 'Cohort hotspots'),
    h('div', { class: 'row' }, field('From', hotFrom), field('To', hotTo)), field('District', district),
    h('button', { type: 'submit' }, 'Load'),
    field('Hour of the day', hour, 'slide to see one hour; the far right is the whole day'), hourLabel,
    hotMessage);
  const isSupervisor = me && me.roles.includes('supervisor');
  panel.replaceChildren(subjectForm, ...(isSupervisor ? [hotForm] : []));

  async function showSubject(event) {
    event.preventDefault();
    if (!subject.value) return say(message, 'Choose a subject.');
    const q = `from=${from.value}T00:00:00Z&to=${to.value}T23:59:59Z`;
    say(message, 'Loading…', 'info');
    try {
      const [p, r] = await Promise.all([
        api.call('GET', `/v1/subjects/${subject.value}/places?${q}`),
        api.call('GET', `/v1/subjects/${subject.value}/routine?${q}`),
      ]);
      drawPlaces(p);
      drawRoutine(r, p);
      say(message, `${p.places.length} places; viewing is recorded in the audit trail.`, 'info');
    } catch (err) {
      say(message, problemText(err));
    }
  }

  function drawPlaces(p) {
    placeLayer.clearLayers();
    places.replaceChildren(...p.places.slice(0, 12).map((pl, i) => {
      const [lon, lat] = pl.centre.coordinates;
      const usual = pl.hours_of_day.map((v, hr) => [v, hr]).filter(([v]) => v > 0)
        .sort((a, b) => b[0] - a[0]).slice(0, 3).map(([, hr]) => `${String(hr).padStart(2, '0')}:00`);
      const name = pl.place_id === p.home_place_id ? 'Home' : `Place ${pl.place_id}`;
      L.circle([lat, lon], { radius: 50, color: PLACE_COLOURS[i % PLACE_COLOURS.length], weight: 2 })
        .bindTooltip(tip(`${name}: ${pl.visits} visits, ${pl.hours} h`)).addTo(placeLayer);
      return h('li', { class: 'place', dataset: { place: pl.place_id } },
        h('strong', {}, name), ` · ${pl.visits} visits · ${pl.hours} h · usually ${usual.join(', ') || '—'}`);
    }));
    fitTo(map, placeLayer, 15);
  }

  function drawRoutine(r, p) {
    // one row a day, one cell an hour: what the hour was mostly spent on
    const colourOf = (slot) => {
      const parts = [['home', r.home[slot], PLACE_COLOURS[0]], ['moving', r.moving[slot], '#adb5bd'],
        ['no data', r.no_data[slot], '#f1f3f5'],
        ...Object.entries(r.places).map(([id, v]) => [`place ${id}`, v[slot],
          PLACE_COLOURS[p.places.findIndex((x) => String(x.place_id) === id) % PLACE_COLOURS.length]])];
      return parts.sort((a, b) => b[1] - a[1])[0];
    };
    const rows = WEEKDAYS.map((d, day) => h('tr', {}, h('th', {}, d),
      ...Array.from({ length: 24 }, (_, hr) => {
        const [what, hours, colour] = colourOf(day * 24 + hr);
        return h('td', { title: `${d} ${hr}:00 · mostly ${what} (${hours} h)`, style: `background:${colour}` });
      })));
    routine.replaceChildren(h('table', { class: 'routine', id: 'pattern-week' },
      h('caption', {}, 'The week, hour by hour (UK time): mostly where'), h('tbody', {}, ...rows)));
  }

  let cellsByHour = new Map();
  async function loadHotspots(event) {
    event.preventDefault();
    const base = `from=${hotFrom.value}T00:00:00Z&to=${hotTo.value}T23:59:59Z&cell_m=500`
      + (district.value ? `&district=${encodeURIComponent(district.value)}` : '');
    say(hotMessage, 'Loading…', 'info');
    try {
      const hours = [...Array(24).keys()];
      const all = await api.call('GET', `/v1/hotspots?${base}`);
      const each = await Promise.all(hours.map((hr) =>
        api.call('GET', `/v1/hotspots?${base}&hour_from=${hr}&hour_to=${hr + 1}`)));
      cellsByHour = new Map([[24, all], ...each.map((c, hr) => [hr, c])]);
      drawHour();
      say(hotMessage, `${all.features.length} cells with three subjects or more.`, 'info');
    } catch (err) {
      say(hotMessage, problemText(err));
    }
  }

  function drawHour() {
    const hr = Number(hour.value);
    hourLabel.textContent = hr === 24 ? 'all day' : `${String(hr).padStart(2, '0')}:00–${String(hr + 1).padStart(2, '0')}:00`;
    hotLayer.clearLayers();
    const cells = cellsByHour.get(hr);
    if (!cells) return;
    const most = Math.max(1, ...cells.features.map((f) => f.properties.hours));
    L.geoJSON(cells, {
      style: (f) => ({ color: '#c1121f', weight: 0.5, fillColor: '#c1121f', fillOpacity: 0.15 + 0.6 * f.properties.hours / most }),
      onEachFeature: (f, layer) => layer.bindTooltip(tip(`${f.properties.hours} h · ${f.properties.subjects} subjects · ${f.properties.district}`)),
    }).addTo(hotLayer);
  }

  api.call('GET', '/v1/subjects').then((subjects) => {
    subject.replaceChildren(h('option', { value: '' }, 'Choose a subject…'),
      ...subjects.map((s) => h('option', { value: s.id }, s.ref)));
  }).catch((err) => say(message, problemText(err)));

  return () => { placeLayer.remove(); hotLayer.remove(); };
}
