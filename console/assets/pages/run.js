// A run: its environments in order with their gates, and the whole graph
// of the environment shown (every node, before and while it runs) on a
// canvas, or as a list; both follow the run's events live.

import { request, get, post, seg } from '../api.js';
import { h, fill, route, time, duration, dialog, announce } from '../dom.js';
import { STATUSES, CODE, FINAL, badgeClass } from '../status.js';
import { Dag } from '../dag.js';
import { runStatusBadge } from './runs.js';
import { decide } from './gate.js';

const FINAL_CODES = new Set([...FINAL].map((k) => CODE[k]));

export async function render(main, r, session, app) {
  const id = r.run;
  const [first, graphAnswer] = await Promise.all([
    request(`/runs/${seg(id)}?view=nodes`),
    request(`/runs/${seg(id)}/graph`).catch((e) => ({ error: e })),
  ]);
  performance.mark('run-fetched');
  let doc = first.data;
  if (doc.environments && !doc.environments.length && doc.status === 'running') return starting(main, doc, app);
  const queued = !doc.environments && doc.status === 'queued' ? doc : null;
  if (!doc.environments && (!queued || graphAnswer.error)) return notStarted(main, doc, app);
  if (graphAnswer.error) throw graphAnswer.error;
  const graph = graphAnswer.data;
  const L = graph.layout;
  const n = L.names.length;
  // A queued run has no status yet, but its whole graph is known: every
  // node is shown, pending, until it starts.
  if (queued) doc = queuedDocument(queued, graph);
  const index = new Map(L.names.map((name, i) => [name, i]));
  // Dependencies and dependents of each node, as index lists.
  const needs = Array.from({ length: n }, () => []);
  const needed = Array.from({ length: n }, () => []);
  for (let j = 0; j < L.edges.length; j += 2) {
    needs[L.edges[j + 1]].push(L.edges[j]);
    needed[L.edges[j]].push(L.edges[j + 1]);
  }
  // What a node waits for before it runs: what it needs on a deploy, what
  // needs it on an undeploy (destroyed first); and who waits for it.
  const undeploy = doc.operation === 'undeploy';
  const waitsFor = undeploy ? needed : needs;
  const waitedBy = undeploy ? needs : needed;
  const may = Object.fromEntries(graph.environments.map((e) => [e.name, e]));
  const stats = window.stackpipe.stats;
  stats.events = 0;
  stats.final = 0;
  stats.maxApplyLagMs = 0;

  // Each environment: its status and, per node (by layout index), the
  // server's status and times; `codes` is what is drawn.
  const envs = doc.environments.map((e) => environment(e));
  const envAt = new Map(envs.map((e, k) => [e.name, k]));
  function environment(e) {
    const raw = new Array(n).fill(null);
    const info = new Array(n).fill(null);
    for (const node of e.nodes) {
      const i = index.get(node.name);
      if (i === undefined) continue;
      raw[i] = node.status;
      info[i] = { change: node.change, started: node.started_ms, finished: node.finished_ms, error: node.error, level: node.level };
    }
    const env = { name: e.name, status: e.status, reason: e.reason, waiting_for: e.waiting_for, raw, info,
      codes: new Uint8Array(n), shown: new Uint8Array(n), final: 0, started: hasStarted(e) };
    recodeAll(env);
    return env;
  }
  function code(env, i) {
    const s = env.raw[i];
    if (s === null) return CODE.pending;
    if (s !== 'queued') return CODE[s] ?? CODE.pending;
    if (env.status === 'skipped' || env.status === 'cancelled') return CODE[env.status];
    if (!env.started || env.status === 'queued' || env.status === 'waiting') return CODE.pending;
    for (const d of waitsFor[i]) if (env.raw[d] !== null && env.raw[d] !== 'succeeded') return CODE.blocked;
    return CODE.queued;
  }
  function recodeAll(env) {
    env.final = 0;
    for (let i = 0; i < n; i++) {
      env.shown[i] = env.raw[i] === null ? 0 : 1;
      env.codes[i] = code(env, i);
      if (env.shown[i] && FINAL_CODES.has(env.codes[i])) env.final++;
    }
  }
  let shownEnv = envs.findIndex((e) => e.status === 'running' || e.status === 'waiting');
  if (shownEnv < 0) shownEnv = Math.max(0, envs.findLastIndex((e) => e.started));
  const wanted = r.query.get('env');
  if (wanted && envs.some((e) => e.name === wanted)) shownEnv = envs.findIndex((e) => e.name === wanted);

  // The page.
  const head = h('div', { class: 'run-head' });
  const gates = h('section', { class: 'gates', 'aria-labelledby': 'gates-h' });
  const promotion = h('ol', { class: 'promotion run-envs', 'aria-label': 'Environments in promotion order' });
  const decisions = h('section', { class: 'decisions', 'aria-labelledby': 'decisions-h' });
  const envTabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Environment shown' });
  const viewTabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'View' });
  const graphPanel = h('div', { id: 'panel-graph', role: 'tabpanel', 'aria-labelledby': 'tab-graph', class: 'graph-panel' });
  const listPanel = h('div', { id: 'panel-list', role: 'tabpanel', 'aria-labelledby': 'tab-list', hidden: true });
  fill(main, head, promotion, gates, decisions,
    h('h2', { class: 'visually-hidden' }, 'Nodes'),
    h('div', { class: 'view-bar' }, envTabs, viewTabs), graphPanel, listPanel);

  // The run's duration, moved on by the clock while it runs (only its
  // text: the buttons beside it stay the elements they are, and keep focus).
  const runTook = h('span', { id: 'run-duration' });
  function showDuration() {
    runTook.textContent = duration((doc.finished_ms || Date.now()) - doc.started_ms);
  }
  function renderHead() {
    showDuration();
    // A button with the focus keeps it when the header is drawn again.
    const focused = head.contains(document.activeElement) ? document.activeElement.id : '';
    const running = doc.status === 'running' || doc.status === 'queued';
    const actions = h('div', { class: 'actions' });
    if (graph.may_operate && running) {
      actions.append(h('button', { type: 'button', class: 'danger', id: 'cancel-run', onclick: cancelRun }, 'Cancel run…'));
    }
    if (graph.may_operate && !running) {
      actions.append(h('button', { type: 'button', id: 'rerun', onclick: rerun }, 'Run again'));
    }
    fill(head, 
      h('p', { class: 'crumbs' }, h('a', { href: route('runs') }, 'Runs'), ' / ', h('a', { href: `#/runs?pipeline=${encodeURIComponent(doc.pipeline)}` }, doc.pipeline)),
      h('h1', null, `Run ${doc.run} `, runStatusBadge(doc.status)),
      queued && queued.waiting_for.length
        ? h('p', { class: 'note', id: 'queued-behind' }, 'Queued behind ', queued.waiting_for.map((w, k) => [k ? ', ' : '', h('a', { href: route('runs', w) }, w)]),
          ': they hold resources this run would lock. It starts when they end.')
        : null,
      h('dl', { class: 'facts' },
        fact('Operation', doc.operation),
        fact('Started by', `${doc.started_by} (${doc.trigger})`),
        fact('Started', time(doc.started_ms)),
        fact('Duration', runTook),
        doc.message ? fact('Message', doc.message) : null,
        doc.rerun_of ? fact('Rerun of', h('a', { href: route('runs', doc.rerun_of) }, doc.rerun_of)) : null,
        doc.targets.length ? fact('Targets', doc.targets.join(', ')) : null),
      actions);
    if (focused) document.getElementById(focused)?.focus();
  }

  function renderEnvs() {
    fill(promotion, ...envs.map((env, k) => h('li', { dataset: { environment: env.name, status: env.status } },
      h('span', { class: 'env-name' }, env.name),
      h('span', { class: badgeClass(env.status === 'waiting' ? 'waiting' : env.status) }, env.status === 'waiting' ? 'waiting for approval' : env.status),
      may[env.name] && may[env.name].approval ? h('span', { class: 'help' }, ` approval by ${may[env.name].approvers}`) : null,
      env.reason ? h('span', { class: 'help reason' }, ` ${env.reason}`) : null,
      k === shownEnv ? h('span', { class: 'visually-hidden' }, ' (shown below)') : null)));
  }

  // The gates waiting now: an environment's approval, a node's pause or policy.
  let waiting = doc.waiting.slice();
  // What the gates section shows now: drawn again only when that changes,
  // so that a button someone is about to press stays the same element.
  let gatesShown = null;
  function renderGates() {
    const key = JSON.stringify(waiting.map((g) => [g.environment, g.node, g.gate, g.reason, g.detail]));
    if (key === gatesShown) return;
    gatesShown = key;
    if (!waiting.length) {
      fill(gates);
      gates.hidden = true;
      return;
    }
    gates.hidden = false;
    fill(gates, h('h2', { id: 'gates-h' }, 'Waiting for approval'),
      h('ul', null, waiting.map((g) => {
        const m = may[g.environment] || {};
        const where = g.node ? `${g.environment} / ${g.node}` : `environment ${g.environment}`;
        const key = g.node ? `${g.environment}-${g.node}` : g.environment;
        return h('li', { class: 'gate card', dataset: { gate: key } },
          h('p', null, h('strong', null, where), ` — ${g.gate.replaceAll('_', ' ')}: ${g.reason}`),
          g.detail ? h('pre', { class: 'detail' }, g.detail) : null,
          h('p', { class: 'help' }, 'Waiting since ', time(g.since_ms), '.'),
          h('div', { class: 'actions' },
            m.may_approve ? h('button', { type: 'button', class: 'primary', dataset: { approve: key }, onclick: () => decide(id, g, 'approve') }, 'Approve…') : null,
            m.may_reject ? h('button', { type: 'button', class: 'danger', dataset: { reject: key }, onclick: () => decide(id, g, 'reject') }, 'Reject…') : null,
            !m.may_approve && !m.may_reject ? h('span', { class: 'help' }, `Approvers: ${m.approvers || 'operators'}.`) : null));
      })));
  }

  function renderDecisions() {
    if (!doc.decisions.length) {
      fill(decisions);
      return;
    }
    fill(decisions, h('h2', { id: 'decisions-h' }, 'Decisions'),
      h('ul', { class: 'decision-list' }, doc.decisions.map((d) => h('li', { dataset: { decision: d.decision } },
        h('span', { class: badgeClass(d.decision === 'approved' ? 'succeeded' : 'failed') }, d.decision),
        ` ${d.node ? `${d.environment} / ${d.node}` : d.environment} by `, h('strong', null, d.by), ' ', time(d.at_ms),
        d.comment ? h('blockquote', { class: 'comment' }, d.comment) : null))));
  }

  async function cancelRun() {
    const answer = await dialog(`Cancel run ${id}?`,
      h('p', null, 'Operations in flight finish; nothing new starts, and what has not run is cancelled.'),
      [{ label: 'Cancel the run', value: 'yes', class: 'danger', id: 'cancel-confirm' }, { label: 'Keep it running', value: 'no' }]);
    if (answer !== 'yes') return;
    try {
      await post(`/runs/${seg(id)}/cancel`, {});
      announce(`Run ${id} is being cancelled`);
    } catch (e) {
      await dialog('Not cancelled', h('p', { class: 'error' }, e.message), [{ label: 'OK', value: 'ok' }]);
    }
  }

  async function rerun() {
    try {
      const created = await post(`/runs/${seg(id)}/rerun`, {});
      location.hash = route('runs', created.run);
    } catch (e) {
      await dialog('Not started', h('p', { class: 'error' }, e.message), [{ label: 'OK', value: 'ok' }]);
    }
  }

  // The graph.
  const canvas = h('canvas', { id: 'dag', tabindex: 0, role: 'img',
    'aria-label': `Graph of ${n} nodes; arrow keys pan, + and - zoom, 0 fits, Enter opens the node found. The list view has every node as text.` });
  const tip = h('div', { class: 'tip', role: 'tooltip', hidden: true });
  const find = h('input', { id: 'find', type: 'search', placeholder: 'Find a node', 'aria-label': 'Find a node by name', list: null, size: 18 });
  const found = h('span', { class: 'help', id: 'found', 'aria-live': 'polite' });
  const levels = h('details', { class: 'levels' }, h('summary', null, 'Levels'),
    h('div', { class: 'level-buttons' }, Array.from({ length: L.level_count }, (_, l) =>
      h('button', { type: 'button', 'aria-pressed': 'false', dataset: { level: l }, onclick: (e) => {
        const folded = dag.toggleLevel(l);
        e.currentTarget.setAttribute('aria-pressed', String(folded));
      } }, `Fold level ${l}`))));
  const legend = h('ul', { class: 'legend', 'aria-label': 'Legend' },
    STATUSES.map((s) => h('li', null, h('span', { class: `glyph st-${s.key}`, 'aria-hidden': 'true' }, s.glyph), ` ${s.label}`)));
  const toolbar = h('form', { class: 'toolbar', role: 'search', onsubmit: (e) => { e.preventDefault(); findNode(); } },
    find, h('button', { type: 'submit' }, 'Find'), found,
    h('button', { type: 'button', 'aria-label': 'Zoom out', onclick: () => dag.zoomAt(0.8, dag.cssW / 2, dag.cssH / 2) }, '−'),
    h('button', { type: 'button', 'aria-label': 'Zoom in', onclick: () => dag.zoomAt(1.25, dag.cssW / 2, dag.cssH / 2) }, '+'),
    h('button', { type: 'button', onclick: () => dag.fit() }, 'Fit'),
    levels);
  fill(graphPanel, toolbar, legend, h('div', { class: 'canvas-wrap' }, canvas, tip));
  const dag = new Dag(canvas, L, {
    onOpen: (i) => { location.hash = route('runs', id, envs[shownEnv].name, L.names[i]); },
    onHover: (i, x, y) => {
      if (i < 0) { tip.hidden = true; return; }
      const env = envs[shownEnv];
      const s = STATUSES[env.codes[i]];
      const info = env.info[i] || {};
      fill(tip, h('strong', null, L.names[i]), h('br'), `${L.types[L.type_of[i]]} · level ${L.levels[i]}`, h('br'),
        `${s.glyph} ${s.label}`, info.change ? ` · ${info.change}` : '', info.error ? h('span', { class: 'error' }, h('br'), info.error) : null);
      tip.style.left = `${Math.min(x + 14, canvas.clientWidth - 260)}px`;
      tip.style.top = `${y + 14}px`;
      tip.hidden = false;
    },
    onFold: (l, folded) => {
      const b = levels.querySelector(`[data-level="${l}"]`);
      if (b) b.setAttribute('aria-pressed', String(folded));
    },
  });
  window.stackpipe.panBy = (dx, dy) => dag.panBy(dx, dy);
  window.stackpipe.dagView = () => ({ zoom: dag.k, x: dag.tx, y: dag.ty, found: dag.found >= 0 ? L.names[dag.found] : null, folded: [...dag.folded] });
  let firstDrawn = false;
  dag.onDrawn = () => {
    stats.maxApplyLagMs = Math.max(stats.maxApplyLagMs, dag.maxLagMs);
    if (!firstDrawn) {
      firstDrawn = true;
      window.stackpipe.marks.dagDrawn = performance.now();
      canvas.dataset.drawn = 'true';
    }
  };
  function findNode() {
    const q = find.value.trim();
    if (!q) return;
    let i = index.get(q);
    if (i === undefined) i = L.names.findIndex((x, j) => x.includes(q) && envs[shownEnv].shown[j] === 1);
    if (i === undefined || i < 0) {
      found.textContent = `No node named ${q}.`;
      return;
    }
    dag.centre(i);
    const s = STATUSES[envs[shownEnv].codes[i]];
    found.textContent = `${L.names[i]}: ${s.label}. Press Enter on the graph to open it.`;
    canvas.focus();
  }

  // The list: every node of the environment as an element with its name and status.
  let list = null;
  function buildList() {
    const env = envs[shownEnv];
    const rows = new Array(n);
    const tbody = h('tbody');
    for (let i = 0; i < n; i++) {
      if (!env.shown[i]) continue;
      const s = STATUSES[env.codes[i]];
      const info = env.info[i] || {};
      const statusCell = h('td', { class: 'status' }, h('span', { class: `glyph st-${s.key}`, 'aria-hidden': 'true' }, s.glyph), ' ', s.label);
      const tookCell = h('td', { class: 'num' }, took(info));
      const changeCell = h('td', null, info.change || '');
      const row = h('tr', { dataset: { node: L.names[i], status: s.key, level: L.levels[i] } },
        h('td', null, h('a', { href: route('runs', id, env.name, L.names[i]) }, L.names[i])),
        h('td', null, L.types[L.type_of[i]]),
        h('td', { class: 'num' }, String(L.levels[i])),
        statusCell, changeCell, tookCell);
      rows[i] = { row, statusCell, tookCell, changeCell };
      tbody.append(row);
    }
    const sortBy = (key) => {
      const order = [];
      for (let i = 0; i < n; i++) if (rows[i]) order.push(i);
      const dur = (i) => { const x = env.info[i] || {}; return x.finished && x.started ? x.finished - x.started : -1; };
      const cmp = {
        name: (a, b) => (L.names[a] < L.names[b] ? -1 : 1),
        level: (a, b) => L.levels[a] - L.levels[b] || a - b,
        status: (a, b) => env.codes[a] - env.codes[b] || a - b,
        duration: (a, b) => dur(b) - dur(a),
      }[key];
      order.sort(cmp);
      fill(tbody, ...order.map((i) => rows[i].row));
      for (const th of table.querySelectorAll('th[data-sort]')) th.setAttribute('aria-sort', th.dataset.sort !== key ? 'none' : key === 'duration' ? 'descending' : 'ascending');
    };
    const th = (label, key) => h('th', { scope: 'col', dataset: key ? { sort: key } : {}, 'aria-sort': key ? 'none' : null },
      key ? h('button', { type: 'button', class: 'link', id: `sort-${key}`, onclick: () => sortBy(key) }, label) : label);
    const filter = h('input', { type: 'search', id: 'list-filter', 'aria-label': 'Show only the nodes whose name has', placeholder: 'Filter by name' });
    filter.addEventListener('input', () => {
      const q = filter.value.trim();
      for (let i = 0; i < n; i++) if (rows[i]) rows[i].row.hidden = q !== '' && !L.names[i].includes(q);
    });
    const table = h('table', { class: 'nodes', id: 'node-list' },
      h('caption', { class: 'visually-hidden' }, `Nodes of ${env.name}`),
      h('thead', null, h('tr', null, th('Node', 'name'), th('Type'), th('Level', 'level'), th('Status', 'status'), th('Change'), th('Duration', 'duration'))),
      tbody);
    fill(listPanel, h('div', { class: 'toolbar' }, filter), h('div', { class: 'scroll' }, table));
    list = { rows, env: shownEnv };
  }
  function took(info) {
    return info.started && info.finished ? duration(info.finished - info.started) : '';
  }

  function showTabs() {
    fill(envTabs, ...envs.map((env, k) => h('button', {
      type: 'button', role: 'tab', id: `env-${env.name}`, 'aria-selected': String(k === shownEnv), tabindex: k === shownEnv ? 0 : -1,
      onclick: () => selectEnv(k),
    }, env.name)));
    fill(viewTabs, 
      h('button', { type: 'button', role: 'tab', id: 'tab-graph', 'aria-controls': 'panel-graph', 'aria-selected': String(listPanel.hidden), onclick: () => view('graph') }, 'Graph'),
      h('button', { type: 'button', role: 'tab', id: 'tab-list', 'aria-controls': 'panel-list', 'aria-selected': String(!listPanel.hidden), onclick: () => view('list') }, 'List'));
  }
  for (const tabs of [envTabs, viewTabs]) {
    tabs.addEventListener('keydown', (e) => {
      if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
      const all = [...tabs.querySelectorAll('[role=tab]')];
      const at = all.indexOf(document.activeElement);
      const next = all[(at + (e.key === 'ArrowRight' ? 1 : all.length - 1)) % all.length];
      next.click();
      tabs.querySelector(`#${CSS.escape(next.id)}`)?.focus();
    });
  }
  function selectEnv(k) {
    shownEnv = k;
    dag.found = -1;
    dag.setAll(envs[k].codes, envs[k].shown);
    stats.final = envs[k].final;
    if (!listPanel.hidden) buildList();
    else list = null;
    showTabs();
    renderEnvs();
  }
  function view(which) {
    listPanel.hidden = which !== 'list';
    graphPanel.hidden = which !== 'graph';
    if (which === 'list' && (!list || list.env !== shownEnv)) buildList();
    if (which === 'graph') dag.resize();
    showTabs();
  }

  function setCode(env, k, i, arrived) {
    const c = code(env, i);
    const old = env.codes[i];
    if (c === old) return;
    env.codes[i] = c;
    if (FINAL_CODES.has(c) !== FINAL_CODES.has(old)) env.final += FINAL_CODES.has(c) ? 1 : -1;
    if (k !== shownEnv) return;
    stats.final = env.final;
    dag.set(i, c, arrived);
    updateRow(env, k, i);
  }
  function updateRow(env, k, i) {
    if (!list || list.env !== k || !list.rows[i]) return;
    const s = STATUSES[env.codes[i]];
    const row = list.rows[i];
    row.row.dataset.status = s.key;
    row.statusCell.lastChild.textContent = ` ${s.label}`;
    row.statusCell.firstChild.className = `glyph st-${s.key}`;
    row.statusCell.firstChild.textContent = s.glyph;
    const info = env.info[i] || {};
    row.tookCell.textContent = took(info);
    row.changeCell.textContent = info.change || '';
  }
  function setNode(k, i, raw, arrived) {
    const env = envs[k];
    env.raw[i] = raw;
    setCode(env, k, i, arrived);
    for (const d of waitedBy[i]) setCode(env, k, d, arrived);
  }
  /** Every node of environment `k` coded again (its status moved). */
  function recodeEnv(k) {
    const env = envs[k];
    const before = env.codes.slice();
    const shownBefore = env.shown.slice();
    recodeAll(env);
    if (k !== shownEnv) return;
    stats.final = env.final;
    dag.setAll(env.codes, env.shown);
    if (!list || list.env !== k) return;
    let members = false;
    for (let i = 0; i < n; i++) {
      if (shownBefore[i] !== env.shown[i]) members = true;
      else if (before[i] !== env.codes[i]) updateRow(env, k, i);
    }
    if (members) buildList();
  }

  // The run's events, from the last one the status document holds.
  let reread = null;
  const rereadSoon = () => {
    if (!reread) reread = setTimeout(refreshDoc, 300);
  };
  async function refreshDoc() {
    reread = null;
    try {
      doc = (await request(`/runs/${seg(id)}?view=nodes`)).data;
      if (!doc.environments) return;
      waiting = doc.waiting.slice();
      doc.environments.forEach((e) => {
        const k = envAt.get(e.name);
        if (k === undefined) return;
        const env = envs[k];
        env.status = e.status;
        env.reason = e.reason;
        env.waiting_for = e.waiting_for;
        env.started = env.started || hasStarted(e);
        for (const node of e.nodes) {
          const i = index.get(node.name);
          if (i === undefined) continue;
          env.raw[i] = node.status;
          env.info[i] = { change: node.change, started: node.started_ms, finished: node.finished_ms, error: node.error, level: node.level };
        }
        recodeEnv(k);
      });
      renderHead();
      renderEnvs();
      renderGates();
      renderDecisions();
    } catch { /* the next event tries again */ }
  }
  let events = null;
  if (doc.status === 'running') {
    const after = first.headers.get('x-stackpipe-event-id') || '0';
    events = new EventSource(`/api/v1/runs/${seg(id)}/events?after=${encodeURIComponent(after)}`);
    const on = (kind, f) => events.addEventListener(kind, (m) => {
      const arrived = performance.now();
      stats.events++;
      let e;
      try { e = JSON.parse(m.data); } catch { return; }
      f(e, arrived);
    });
    on('environment_started', (e) => {
      const k = envAt.get(e.environment);
      if (k === undefined) return;
      const env = envs[k];
      env.status = 'running';
      env.started = true;
      env.waiting_for = null;
      for (const node of e.nodes) {
        const i = index.get(node.name);
        if (i !== undefined && env.raw[i] === null) env.raw[i] = 'queued';
      }
      recodeEnv(k);
      renderEnvs();
    });
    on('op_started', (e, arrived) => {
      const k = envAt.get(e.environment);
      const i = index.get(e.node);
      if (k === undefined || i === undefined) return;
      const env = envs[k];
      // The graph shown follows the run into its next environment once
      // that one's nodes start (not while it waits at its gate).
      if (k !== shownEnv && envs[shownEnv].status !== 'running' && envs[shownEnv].status !== 'waiting') selectEnv(k);
      if (env.raw[i] === 'queued' || env.raw[i] === 'waiting') {
        env.info[i] = { ...(env.info[i] || {}), started: (env.info[i] && env.info[i].started) || Date.now() };
        setNode(k, i, 'running', arrived);
      }
    });
    on('node_finished', (e, arrived) => {
      const k = envAt.get(e.environment);
      const i = index.get(e.node);
      if (k === undefined || i === undefined) return;
      const now = Date.now();
      envs[k].info[i] = { ...(envs[k].info[i] || {}), change: e.change, error: e.error, finished: now, started: now - e.ms };
      setNode(k, i, e.status, arrived);
    });
    on('waiting', (e, arrived) => {
      const k = envAt.get(e.environment);
      if (k === undefined) return;
      waiting.push({ environment: e.environment, node: e.node, gate: e.gate, reason: e.reason, detail: e.detail, since_ms: Date.now() });
      if (e.node) {
        const i = index.get(e.node);
        if (i !== undefined) setNode(k, i, 'waiting', arrived);
      } else {
        envs[k].status = 'waiting';
        recodeEnv(k);
        renderEnvs();
      }
      renderGates();
    });
    on('gate_decided', (e) => {
      waiting = waiting.filter((g) => !(g.environment === e.environment && (g.node || null) === (e.node || null)));
      doc.decisions.push({ environment: e.environment, node: e.node, gate: e.gate, decision: e.decision, by: e.by, comment: e.comment, at_ms: Date.now() });
      renderGates();
      renderDecisions();
      rereadSoon();
    });
    on('environment_finished', (e) => {
      const k = envAt.get(e.environment);
      if (k === undefined) return;
      envs[k].status = e.status;
      envs[k].reason = e.reason;
      recodeEnv(k);
      renderEnvs();
      rereadSoon();
    });
    on('run_finished', (e) => {
      doc.status = e.status;
      events.close();
      rereadSoon();
      announce(`Run ${id} ${e.status}`);
    });
  }
  // The duration shown moves on while the run does.
  const tick = setInterval(() => { if (doc.status === 'running') showDuration(); }, 1000);
  // A queued run's page becomes its run's page when it starts.
  const poll = queued && setInterval(async () => {
    try {
      const d = await get(`/runs/${seg(id)}?view=nodes`);
      if (d.environments || d.status !== 'queued') app.refresh();
    } catch { /* tried again */ }
  }, 1000);

  performance.mark('run-built');
  renderHead();
  renderEnvs();
  renderGates();
  renderDecisions();
  showTabs();
  dag.setAll(envs[shownEnv].codes, envs[shownEnv].shown);
  stats.final = envs[shownEnv].final;
  dag.fit();
  if (r.query.get('view') === 'list') view('list');
  return () => {
    if (events) events.close();
    clearInterval(tick);
    clearInterval(poll);
    clearTimeout(reread);
    dag.destroy();
  };
}

/** The status document of a queued run, as its graph says it will run: every environment, every node pending. */
function queuedDocument(q, graph) {
  const L = graph.layout;
  const envs = graph.environments.map((e) => e.name);
  if (q.operation === 'undeploy') envs.reverse();
  return {
    run: q.run, pipeline: q.pipeline, operation: q.operation, status: 'queued', message: q.message || null,
    started_ms: q.queued_ms, finished_ms: null, started_by: q.started_by, trigger: 'server', rerun_of: null, targets: [],
    environments: envs.map((name) => ({
      name, status: 'queued', reason: null, waiting_for: null,
      nodes: L.names.map((node, i) => ({ name: node, level: L.levels[i], status: 'queued', change: null, started_ms: null, finished_ms: null, error: null })),
    })),
    waiting: [], decisions: [],
  };
}

/** Whether an environment of a status document has started (its gate, if any, passed). */
function hasStarted(e) {
  return e.status === 'running' || e.nodes.some((x) => x.status !== 'queued');
}

/** One fact of a run's header: a term and its value, side by side. */
function fact(term, value) {
  return h('div', null, h('dt', null, term), h('dd', null, value));
}

/** A run that has just started and has not planned its environments yet: shown in a moment. */
function starting(main, doc, app) {
  fill(main, h('p', { class: 'crumbs' }, h('a', { href: route('runs') }, 'Runs')),
    h('h1', null, `Run ${doc.run} `, runStatusBadge(doc.status)), h('p', { class: 'loading' }, 'Starting…'));
  const again = setTimeout(() => app.refresh(), 300);
  return () => clearTimeout(again);
}

/** A run queued behind others, or one that could not start. */
function notStarted(main, doc, app) {
  const status = doc.status === 'queued' ? 'queued' : 'failed';
  fill(main, 
    h('p', { class: 'crumbs' }, h('a', { href: route('runs') }, 'Runs')),
    h('h1', null, `Run ${doc.run} `, runStatusBadge(status)),
    doc.error ? h('p', { class: 'error', role: 'alert' }, doc.error) : null,
    doc.waiting_for ? h('p', null, `Queued behind ${doc.waiting_for.join(', ')}: they hold resources this run would lock. It starts when they end.`) : null);
  if (status !== 'queued') return null;
  const poll = setInterval(async () => {
    try {
      const d = await get(`/runs/${seg(doc.run)}?view=nodes`);
      if (d.environments || d.status !== 'queued') app.refresh();
    } catch { /* tried again */ }
  }, 1000);
  return () => clearInterval(poll);
}
