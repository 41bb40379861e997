// Device health for the caseload: when each tag was last heard from, its battery and strap.
import * as api from './api.js';
import { h, problemText, say } from './dom.js';
import { ago, fmt } from './time.js';

const PROBLEMS = { no_comms: 'no comms', battery_low: 'battery low', strap_open: 'strap open' };

export const view = { id: 'devices', title: 'Devices', roles: ['probation', 'supervisor'], mount };

function mount(panel) {
  const message = h('p', { class: 'message' });
  const body = h('tbody', {});
  async function load() {
    try {
      const rows = await api.call('GET', '/v1/devices');
      say(message, `${rows.length} devices worn; ${rows.filter((r) => r.problems.length).length} need attention.`, 'info');
      body.replaceChildren(...rows.map((r) => h('tr', { class: r.problems.length ? 'attention' : '', dataset: { subject: r.subject_ref } },
        h('td', {}, r.subject_ref), h('td', {}, r.serial),
        h('td', { title: fmt(r.last_seen_at) }, ago(r.last_seen_at)),
        h('td', {}, r.battery === null ? '—' : `${r.battery}%`),
        h('td', {}, r.strap || '—'),
        h('td', {}, r.problems.map((p) => PROBLEMS[p] || p).join(', ')))));
    } catch (err) {
      say(message, problemText(err));
    }
  }
  const timer = setInterval(load, 30_000);
  panel.replaceChildren(
    h('h2', {}, 'Device health'),
    h('button', { type: 'button', class: 'secondary', onclick: load }, 'Refresh'),
    message,
    h('table', { id: 'device-table', class: 'table' },
      h('thead', {}, h('tr', {}, ...['Subject', 'Tag', 'Last seen', 'Battery', 'Strap', 'Attention'].map((t) => h('th', {}, t)))),
      body));
  load();
  return () => clearInterval(timer);
}
