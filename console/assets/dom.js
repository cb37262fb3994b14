// Building elements. Every string given becomes a text node or an
// attribute value, never markup: a resource named `<img src=x
// onerror=alert(1)>` shows as those characters. (No module of the console
// parses strings as HTML; a unit test of the console crate checks it.)

/** An element `tag` with `attrs` and `children` (strings, numbers, nodes, arrays of them). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

/** Appends `children` to `el` as text or nodes. */
export function append(el, children) {
  for (const c of [children].flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces `el`'s children with `children` (as `append` takes them: text, nodes, arrays; null left out). */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A link inside the console: `parts` are path segments, each encoded. */
export function route(...parts) {
  return '#/' + parts.map((p) => encodeURIComponent(String(p))).join('/');
}

/** `route(...)` with a query of `params` (those set). */
export function routeWith(params, ...parts) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return route(...parts) + (s ? '?' + s : '');
}

export function time(ms) {
  if (!ms) return '';
  const d = new Date(ms);
  return h('time', { datetime: d.toISOString(), title: d.toLocaleString() }, relative(ms));
}

/** "12 s ago", "3 min ago", "2 h ago", or the date. */
export function relative(ms) {
  const s = Math.round((Date.now() - ms) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toLocaleDateString();
}

/** A duration in ms as "850 ms", "12.3 s", "4 min 5 s", "1 h 2 min". */
export function duration(ms) {
  if (ms === null || ms === undefined || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** Says `text` to a screen reader. */
export function announce(text) {
  const el = document.getElementById('announce');
  if (el) {
    el.textContent = '';
    setTimeout(() => { el.textContent = text; }, 30);
  }
}

/** A modal dialog with `body` and buttons; resolves with the button's value (or null when dismissed). */
export function dialog(title, body, buttons) {
  return new Promise((resolve) => {
    const id = 'dlg-' + Math.random().toString(36).slice(2);
    const form = h('form', { method: 'dialog' },
      h('h2', { id }, title),
      body,
      h('div', { class: 'actions' }, buttons.map((b) =>
        h('button', { type: 'submit', value: b.value, class: b.class || '', id: b.id || null }, b.label))));
    const dlg = h('dialog', { 'aria-labelledby': id }, form);
    document.body.append(dlg);
    dlg.addEventListener('close', () => {
      const v = dlg.returnValue || null;
      dlg.remove();
      resolve(v === '' ? null : v);
    });
    dlg.showModal();
  });
}
