// TORCH's web app: sign in with a token; the role decides which views are shown.
import * as api from './api.js';
import { h, say } from './dom.js';
import { createMap } from './map.js';
import { view as sceneView } from './scene.js';
import { view as zonesView } from './zones.js';
import { Inbox, alertsView } from './alerts.js';
import { view as devicesView } from './devices.js';
import { view as patternsView } from './patterns.js';

const $ = (id) => document.getElementById(id);
let session = null; // { me, map, inbox, unmount }

function showSignIn(reason) {
  if (session) {
    if (session.inbox) session.inbox.close();
    if (session.unmount) session.unmount();
    session.map.remove();
    session = null;
  }
  api.token.clear();
  $('app').hidden = true;
  $('signin').hidden = false;
  say($('signin-error'), reason || '');
  $('signin-token').focus();
}

async function signIn(event) {
  event.preventDefault();
  api.token.set($('signin-token').value.trim());
  await start();
}

async function start() {
  let me;
  try {
    me = await api.call('GET', '/v1/me');
  } catch (err) {
    return showSignIn(err.status === 401 ? 'That token is not valid: unknown, expired or revoked.' : err.message);
  }
  $('signin').hidden = true;
  $('signin-token').value = '';
  $('app').hidden = false;
  $('whoami').textContent = `${me.name} · ${me.roles.join(', ')}`;
  const map = createMap($('map'), me.map);
  session = { me, map, inbox: null, unmount: null };
  const has = (roles) => roles.some((r) => me.roles.includes(r));
  const tabs = {};
  if (has(['probation', 'supervisor'])) {
    session.inbox = new Inbox((n) => {
      if (tabs.alerts) tabs.alerts.dataset.count = n ? String(n) : '';
    });
  }
  const views = [sceneView, zonesView, ...(session.inbox ? [alertsView(session.inbox)] : []), devicesView, patternsView]
    .filter((v) => has(v.roles));
  $('tabs').replaceChildren(...views.map((v) => {
    tabs[v.id] = h('button', { type: 'button', role: 'tab', id: `tab-${v.id}`, onclick: () => open(v) }, v.title);
    return tabs[v.id];
  }));
  function open(v) {
    if (session.unmount) session.unmount();
    for (const [id, tab] of Object.entries(tabs)) tab.setAttribute('aria-selected', String(id === v.id));
    session.unmount = v.mount($('panel'), map, me) || null;
  }
  if (views.length) open(views[0]);
  else $('panel').replaceChildren(h('p', {}, `The ${me.role} role has no views here; the command line serves it.`));
  setTimeout(() => map.invalidateSize(), 0);
}

api.token.onSignedOut((detail) => showSignIn(detail || 'Signed out.'));
$('signin-form').addEventListener('submit', signIn);
$('signout').addEventListener('click', () => showSignIn('Signed out.'));
if (api.token.get()) start();
else showSignIn();
