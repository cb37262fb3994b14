// Runs: every run the user may see, newest first, with the queue on top;
// filters by pipeline, environment, status and user (kept in the address,
// so a filtered list can be shared); the list follows the server's events
// and refreshes itself while runs are in progress.

import { get, seg } from '../api.js';
import { h, fill, route, routeWith, time, duration } from '../dom.js';
import { badgeClass } from '../status.js';

const RUN_STATUSES = ['running', 'succeeded', 'failed', 'cancelled', 'interrupted'];

export function runStatusBadge(status) {
  const key = { interrupted: 'failed', queued: 'queued', running: 'running' }[status] || status;
  return h('span', { class: badgeClass(key), 'data-run-status': status }, status);
}

export async function render(main, r) {
  const q = r.query;
  const filters = {
    pipeline: q.get('pipeline') || '', environment: q.get('environment') || '',
    status: q.get('status') || '', started_by: q.get('started_by') || '',
  };
  const pipelines = await get('/pipelines');
  const envs = [...new Set(pipelines.flatMap((p) => p.environments))];
  const select = (name, label, options) => h('div', { class: 'field' },
    h('label', { for: `f-${name}` }, label),
    h('select', { id: `f-${name}`, name },
      h('option', { value: '' }, 'any'),
      options.map((o) => h('option', { value: o, selected: o === filters[name] }, o))));
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter runs' },
    select('pipeline', 'Pipeline', pipelines.map((p) => p.name)),
    select('environment', 'Environment', envs),
    select('status', 'Status', RUN_STATUSES),
    h('div', { class: 'field' }, h('label', { for: 'f-started_by' }, 'Started by'),
      h('input', { id: 'f-started_by', name: 'started_by', value: filters.started_by, size: 12 })),
    h('button', { type: 'submit' }, 'Filter'));
  form.addEventListener('change', (e) => { if (e.target.tagName === 'SELECT') form.requestSubmit(); });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    location.hash = routeWith(data, 'runs');
  });
  const body = h('tbody');
  const table = h('table', { class: 'runs', id: 'runs' },
    h('caption', { class: 'visually-hidden' }, 'Runs, newest first'),
    h('thead', null, h('tr', null, ['Run', 'Pipeline', 'Operation', 'Trigger', 'Started by', 'Message', 'Status', 'Started', 'Duration']
      .map((t) => h('th', { scope: 'col' }, t)))),
    body);
  const live = h('p', { class: 'help', id: 'runs-updated', 'aria-live': 'off' });
  fill(main, h('h1', null, 'Runs'), form, live, h('div', { class: 'scroll' }, table));

  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) query.set(k, v);
  query.set('limit', '200');
  async function load() {
    const [list, queue] = await Promise.all([get('/runs?' + query), get('/queue')]);
    const queued = queue.filter((x) => (!filters.pipeline || x.pipeline === filters.pipeline)
      && (!filters.status) && (!filters.started_by || x.started_by === filters.started_by));
    const rows = [
      ...queued.map((x) => h('tr', { dataset: { run: x.run } },
        h('td', null, h('a', { href: route('runs', x.run) }, x.run)), h('td', null, x.pipeline), h('td', null, x.operation),
        h('td', null, 'server'), h('td', null, x.started_by), h('td', { class: 'message' }, x.message || ''),
        h('td', null, runStatusBadge('queued'), x.waiting_for.length ? ` behind ${x.waiting_for.join(', ')}` : ''),
        h('td', null, time(x.queued_ms)), h('td', null, ''))),
      ...list.map((x) => h('tr', { dataset: { run: x.id } },
        h('td', null, h('a', { href: route('runs', x.id) }, x.id)),
        h('td', null, h('a', { href: routeWith({ pipeline: x.pipeline }, 'runs') }, x.pipeline)),
        h('td', null, x.kind), h('td', null, x.trigger), h('td', null, x.started_by),
        h('td', { class: 'message' }, x.message || ''),
        h('td', null, runStatusBadge(x.status)),
        h('td', null, time(x.started_ms)),
        h('td', null, duration((x.finished_ms || Date.now()) - x.started_ms)))),
    ];
    if (!rows.length) rows.push(h('tr', null, h('td', { colspan: 9, class: 'empty' }, 'No runs match.')));
    fill(body, ...rows);
    live.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    return list.some((x) => x.status === 'running') || queued.length > 0;
  }
  let busy = await load();
  // The server's events say when a run starts, waits, moves on or ends; a
  // burst of them is one refresh.
  let timer = null;
  const refresh = () => {
    if (timer) return;
    timer = setTimeout(async () => {
      timer = null;
      try { busy = await load(); } catch { /* tried again on the next event */ }
    }, 500);
  };
  const events = new EventSource('/api/v1/events');
  for (const kind of ['run_started', 'environment_started', 'environment_finished', 'waiting', 'gate_decided', 'run_finished']) {
    events.addEventListener(kind, refresh);
  }
  // Durations of runs in progress move on with the clock.
  const tick = setInterval(() => { if (busy) refresh(); }, 5000);
  return () => {
    events.close();
    clearInterval(tick);
    clearTimeout(timer);
  };
}

export { seg };
