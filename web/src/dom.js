// A small element builder: h('button', { class: 'x', onclick }, 'text', child, ...).
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, value);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** A labelled form field. */
export function field(label, input, hint) {
  return h('label', { class: 'field' }, label, input, hint ? h('span', { class: 'hint' }, hint) : null);
}

/** Problem details as a sentence, with each field that was wrong. */
export function problemText(err) {
  const errors = err.problem && err.problem.errors;
  if (errors && errors.length) return errors.map((e) => `${e.field}: ${e.message}`).join('; ');
  const text = err.message || String(err);
  // a fault of the service's own: the id the operators find it under, to quote to them
  const id = err.problem && err.problem.request_id;
  return err.status >= 500 && id ? `${text}: ${id}` : text;
}

export function say(el, text, kind = 'error') {
  el.textContent = text || '';
  el.className = `message ${text ? kind : ''}`;
}

/** Text for a Leaflet tooltip or popup, which would read a string as HTML: a zone's label,
 * typed by its author, must show as typed and never run as markup in a colleague's browser. */
export function tip(text) {
  return h('span', {}, String(text));
}
