// The alert inbox: kept up to date live from the Server-Sent Events stream, with
// acknowledge and close, each with a note.
import * as api from './api.js';
import { h, problemText, say } from './dom.js';
import { ago, fmt } from './time.js';

const TITLES = {
  exclusion_breach: 'Exclusion zone entered',
  inclusion_breach: 'Out of inclusion zone (curfew)',
  transit_breach: 'Crossed an exclusion zone',
  strap_tamper: 'Strap tamper',
  no_comms: 'No comms',
  no_fix: 'No fix',
  battery_low: 'Battery low',
  shell_open: 'Tag case opened',
  victim_proximity_warning: 'Near a protected person (warning)',
  victim_proximity_breach: 'Near a protected person (breach)',
};

/** The live inbox; one per signed-in session, kept while other views are shown. */
export class Inbox {
  constructor(onCount) {
    this.onCount = onCount;
    this.status = 'open';
    this.alerts = [];
    this.fresh = new Set();
    this.state = 'connecting';
    this.panel = null;
    this.loading = false;
    this.again = false;
    this.stop = api.stream('/v1/alerts/stream', {
      onEvent: (e) => this.heard(e),
      onState: (s) => { this.state = s; this.render(); },
    });
    this.load();
  }

  close() {
    this.stop();
  }

  heard(event) {
    try {
      this.fresh.add(JSON.parse(event.data).alert_id);
    } catch {
      /* an event we cannot read still means: look again */
    }
    this.load();
  }

  /** Reads the inbox again; a burst of events while a read is under way makes one more. */
  async load() {
    if (this.loading) {
      this.again = true;
      return;
    }
    this.loading = true;
    do {
      this.again = false;
      const q = this.status === 'all' ? '' : `?status=${this.status}`;
      try {
        this.alerts = await api.call('GET', `/v1/alerts${q}`);
        this.error = '';
      } catch (err) {
        this.error = problemText(err);
      }
    } while (this.again);
    this.loading = false;
    if (this.status === 'open') this.onCount(this.alerts.length);
    this.render();
  }

  async act(alert, action, note) {
    try {
      await api.call('POST', `/v1/alerts/${alert.id}/${action}`, { note });
      this.fresh.delete(alert.id);
      await this.load();
    } catch (err) {
      this.error = problemText(err);
      this.render();
    }
  }

  mount(panel) {
    this.panel = panel;
    this.render();
    return () => { this.panel = null; };
  }

  render() {
    if (!this.panel) return;
    const filter = h('select', { id: 'alert-status', onchange: (e) => { this.status = e.target.value; this.load(); } },
      ...['open', 'acknowledged', 'closed', 'all'].map((s) => h('option', { value: s, selected: s === this.status }, s)));
    const live = h('span', { id: 'alert-live', class: `live ${this.state}` }, this.state === 'live' ? 'live' : this.state);
    const message = h('p', { class: 'message' });
    if (this.error) say(message, this.error);
    const cards = this.alerts.map((a) => this.card(a));
    this.panel.replaceChildren(
      h('h2', {}, 'Alerts ', live),
      h('label', { class: 'field inline' }, 'Show ', filter),
      message,
      h('div', { id: 'alert-list' }, ...(cards.length ? cards : [h('p', { class: 'muted' }, `No ${this.status === 'all' ? '' : this.status} alerts.`)])),
    );
  }

  card(a) {
    const note = h('input', { class: 'note', placeholder: 'note: what was done and why', maxlength: 2000 });
    const button = (action, label) => h('button', { type: 'button', class: action === 'close' ? 'secondary' : '',
      onclick: () => {
        if (!note.value.trim()) { note.focus(); note.classList.add('needed'); return; }
        this.act(a, action, note.value.trim());
      } }, label);
    const detail = Object.entries(a.detail || {})
      .filter(([, v]) => typeof v !== 'object')
      .map(([k, v]) => `${k.replaceAll('_', ' ')}: ${/^\d{4}-\d\d-\d\dT/.test(v) ? fmt(v) : v}`).join(' · ');
    const actions = a.status === 'closed' ? null : h('div', { class: 'row' }, note,
      a.status === 'open' ? button('acknowledge', 'Acknowledge') : null, button('close', 'Close'));
    return h('article', { class: `alert ${a.severity} ${this.fresh.has(a.id) ? 'fresh' : ''}`,
      dataset: { alert: a.id, type: a.type, status: a.status } },
    h('header', {}, h('strong', {}, TITLES[a.type] || a.type), h('span', { class: `badge ${a.status}` }, a.status)),
    h('p', { class: 'small' }, `${a.subject_ref || 'unassigned device'} · ${fmt(a.occurred_at)} (${ago(a.occurred_at)})` +
      (a.escalations ? ` · escalated ${a.escalations}×` : '')),
    detail ? h('p', { class: 'small muted' }, detail) : null,
    a.actions.length ? h('ul', { class: 'small actions' }, ...a.actions.map(
      (x) => h('li', {}, `${x.action} by ${x.by}, ${fmt(x.at)}: ${x.note}`))) : null,
    actions);
  }
}

export function alertsView(inbox) {
  return { id: 'alerts', title: 'Alerts', roles: ['probation', 'supervisor'], mount: (panel) => inbox.mount(panel) };
}
