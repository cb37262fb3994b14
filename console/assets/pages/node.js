// A node of a run: its operations with their statuses and times, its log
// streaming live, its input as the job resolved it (secrets masked by the
// server) and its planned diff.

import { request, seg } from '../api.js';
import { h, fill, route, time, duration } from '../dom.js';
import { badgeClass } from '../status.js';

const OPS = ['preflight', 'init', 'refresh', 'preview', 'apply', 'destroy'];

export async function render(main, r) {
  const { run, environment, node } = r;
  const path = `/runs/${seg(run)}/jobs/${seg(environment)}/${seg(node)}`;
  let answer;
  try {
    answer = await request(path);
  } catch (e) {
    if (e.status !== 404) throw e;
    fill(main, crumbs(run, environment, node), h('h1', null, node),
      h('p', null, `The job of ${node} in ${environment} has not started yet.`),
      h('p', null, h('a', { href: route('runs', run) }, 'Back to the run')));
    return null;
  }
  let { job, logs } = answer.data;
  const covered = answer.headers.get('x-stackpipe-event-id');
  const opsBody = h('tbody');
  const logList = h('ol', { class: 'log', id: 'log', 'aria-label': 'Log', tabindex: 0 });
  const head = h('div');
  const inputBox = h('section', { 'aria-labelledby': 'input-h' });
  const diffBox = h('section', { 'aria-labelledby': 'diff-h' });
  fill(main, crumbs(run, environment, node), head,
    h('section', { 'aria-labelledby': 'ops-h' }, h('h2', { id: 'ops-h' }, 'Operations'),
      h('table', { class: 'ops', id: 'ops' }, h('thead', null, h('tr', null,
        ['Operation', 'Status', 'Started', 'Duration', 'Message'].map((t) => h('th', { scope: 'col' }, t)))), opsBody)),
    h('section', { 'aria-labelledby': 'log-h' }, h('h2', { id: 'log-h' }, 'Log'), logList),
    diffBox, inputBox);

  function renderJob() {
    fill(head, 
      h('h1', null, `${node} `, h('span', { class: badgeClass(job.status), 'data-job-status': job.status, id: 'job-status' }, job.status === 'waiting' ? 'waiting for approval' : job.status)),
      h('dl', { class: 'meta' },
        h('dt', null, 'Environment'), h('dd', null, environment),
        h('dt', null, 'Level'), h('dd', null, String(job.level)),
        h('dt', null, 'Change'), h('dd', null, job.change || '—'),
        h('dt', null, 'Started'), h('dd', null, time(job.started_ms)),
        h('dt', null, 'Duration'), h('dd', null, job.started_ms ? duration((job.finished_ms || Date.now()) - job.started_ms) : '')),
      job.error ? h('pre', { class: 'error', role: 'alert', id: 'job-error' }, job.error) : null);
    const ops = [...job.ops].sort((a, b) => OPS.indexOf(a.name) - OPS.indexOf(b.name));
    fill(opsBody, ...ops.map((op) => h('tr', { dataset: { op: op.name, status: op.status } },
      h('th', { scope: 'row' }, op.name),
      h('td', null, h('span', { class: badgeClass(op.status) }, op.status)),
      h('td', null, time(op.started_ms)),
      h('td', null, op.started_ms && op.finished_ms ? duration(op.finished_ms - op.started_ms) : ''),
      h('td', { class: 'message' }, op.message || ''))));
    fill(diffBox, h('h2', { id: 'diff-h' }, 'Planned changes'), diffView(job.diff));
    fill(inputBox, h('h2', { id: 'input-h' }, 'Input'), job.input
      ? [h('dl', { class: 'meta' },
        h('dt', null, 'Type'), h('dd', null, job.input.kind),
        h('dt', null, 'Plugin'), h('dd', null, `${job.input.plugin} (${job.input.plugin_digest.slice(0, 12)})`),
        h('dt', null, 'Flow'), h('dd', null, JSON.stringify(job.input.flow))),
        h('pre', { class: 'json', id: 'input' }, JSON.stringify(job.input.attributes, null, 2))]
      : h('p', { class: 'help' }, 'The input is recorded when the job has resolved it.'));
  }
  function logLine(l) {
    const level = l.level || 'info';
    return h('li', { class: `level-${level}`, dataset: { op: l.op, level } },
      h('span', { class: 'op' }, l.op), ' ', level !== 'info' ? h('span', { class: 'lvl' }, `${level}: `) : null,
      l.plugin ? h('span', { class: 'plugin' }, `${l.plugin}: `) : null, h('span', { class: 'text' }, l.text));
  }
  renderJob();
  fill(logList, ...logs.map(logLine));
  if (!logs.length) logList.append(h('li', { class: 'empty' }, 'No log lines yet.'));

  if (covered === null) return null;
  // The run is in progress: its events from the last one the answer held.
  const events = new EventSource(`/api/v1/runs/${seg(run)}/events?after=${encodeURIComponent(covered)}`);
  const mine = (e) => e.environment === environment && e.node === node;
  let reread = null;
  const rereadSoon = () => {
    if (!reread) reread = setTimeout(async () => {
      reread = null;
      try { job = (await request(path)).data.job; renderJob(); } catch { /* next event */ }
    }, 200);
  };
  events.addEventListener('log', (m) => {
    const e = JSON.parse(m.data);
    if (!mine(e)) return;
    const empty = logList.querySelector('.empty');
    if (empty) empty.remove();
    const atEnd = logList.scrollTop + logList.clientHeight >= logList.scrollHeight - 4;
    logList.append(logLine(e));
    if (atEnd) logList.scrollTop = logList.scrollHeight;
  });
  for (const kind of ['op_started', 'op_finished', 'node_finished', 'waiting', 'gate_decided']) {
    events.addEventListener(kind, (m) => { if (mine(JSON.parse(m.data))) rereadSoon(); });
  }
  events.addEventListener('run_finished', () => { events.close(); rereadSoon(); });
  return () => { events.close(); clearTimeout(reread); };
}

function crumbs(run, environment, node) {
  return h('p', { class: 'crumbs' }, h('a', { href: route('runs') }, 'Runs'), ' / ',
    h('a', { href: route('runs', run) + `?env=${encodeURIComponent(environment)}` }, run), ` / ${environment} / ${node}`);
}

/** The planned changes: each attribute before and after (a sensitive one shows as such, never its value). */
export function diffView(diff) {
  if (!diff) return h('p', { class: 'help' }, 'Not planned yet.');
  if (diff.not_computed !== undefined) return h('p', { class: 'help' }, `Not computed: ${diff.not_computed}`);
  const changes = diff.changes || [];
  if (!changes.length) return h('p', { class: 'help', id: 'diff' }, 'Nothing to change.');
  return h('table', { class: 'diff', id: 'diff' },
    h('thead', null, h('tr', null, ['Attribute', 'Before', 'After', ''].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', null, changes.map((c) => h('tr', { dataset: { path: c.path } },
      h('th', { scope: 'row' }, c.path),
      h('td', { class: 'before' }, c.sensitive ? '(sensitive)' : (c.before ?? '—')),
      h('td', { class: 'after' }, c.sensitive ? '(sensitive)' : (c.after ?? '—')),
      h('td', null, c.forces_replacement ? 'forces replacement' : '')))));
}
