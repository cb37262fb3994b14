// Services (seed 001): every service with its pipeline, repository, state
// and last pipeline; and a service's page: its pipeline executions (kept up
// to date while any is in progress, filtered by environment in the
// address), a Trigger button and its two settings for those who operate.
// Commit messages, branches and authors come from the repository: text.

import { get, post, seg } from '../api.js';
import { h, fill, route, routeWith, time, duration, dialog, announce } from '../dom.js';
import { badgeClass } from '../status.js';
import { poll } from '../poll.js';

/** How often the pages ask again while a pipeline is in progress, and while none is. */
const ACTIVE_MS = 2000;
const IDLE_MS = 15000;

export function isActive(x) {
  return x.status === 'queued' || x.status === 'running';
}

/** What a running execution is doing: "building", "deploying dev", "waiting for approval (prod)"; else null. */
export function stageOf(x) {
  if (x.status !== 'running') return null;
  if (x.build.status === 'pending' || x.build.status === 'running') return 'building';
  const waiting = x.deployments.filter((d) => d.status === 'waiting').map((d) => d.name);
  if (waiting.length) return `waiting for approval (${waiting.join(', ')})`;
  const deploying = x.deployments.find((d) => d.status === 'running');
  if (deploying) return `deploying ${deploying.name}`;
  return x.deploy.status === 'running' ? 'deploying' : null;
}

/** An execution's status as a badge, with the stage it is in while it runs. */
export function executionBadge(x) {
  const stage = stageOf(x);
  const key = x.status === 'interrupted' ? 'failed' : stage && stage.startsWith('waiting') ? 'waiting' : x.status;
  return h('span', { class: 'execution-status' },
    h('span', { class: badgeClass(key), dataset: { executionStatus: x.status } }, x.status),
    stage ? h('span', { class: 'stage' }, ` ${stage}`) : null);
}

/** Where the commit came from: its branch, "tag v1.2", or "PR #7 (feature)". */
export function refOf(c) {
  if (c.pull_request) return `PR #${c.pull_request}${c.branch ? ` (${c.branch})` : ''}`;
  if (c.tag) return `tag ${c.tag}`;
  return c.branch;
}

export const shortSha = (sha) => (sha || '').slice(0, 8);
export const kindLabel = (kind) => (kind === 'preview' ? 'Preview' : 'Production');

/** How long it took, or has taken so far. */
export function took(x) {
  return x.started_ms ? duration((x.ended_ms || Date.now()) - x.started_ms) : '';
}

/** A service's state, in words and as a badge. */
function stateBadge(s) {
  const [key, label] = !s.enabled ? ['cancelled', 'pipelines disabled'] : !s.deploys ? ['skipped', 'deployments disabled'] : ['succeeded', 'enabled'];
  return h('span', { class: badgeClass(key), dataset: { state: label } }, label);
}

export async function render(main, r, session) {
  return r.service ? service(main, r, session) : list(main);
}

/** Every service the user may see, with its last pipeline. */
async function list(main) {
  const body = h('tbody');
  const live = h('p', { class: 'help', id: 'services-updated' });
  const table = h('table', { class: 'services', id: 'services' },
    h('caption', { class: 'visually-hidden' }, 'Services'),
    h('thead', null, h('tr', null, ['Service', 'Pipeline', 'Repository', 'State', 'Last pipeline', 'When']
      .map((t) => h('th', { scope: 'col' }, t)))),
    body);
  fill(main, h('h1', null, 'Services'), live, h('div', { class: 'scroll' }, table));
  async function load() {
    const services = await get('/services');
    const docs = await Promise.all(services.map((s) => get(`/services/${seg(s.name)}`).catch(() => ({ service: s, last: null }))));
    const rows = docs.map(({ service: s, last }) => h('tr', { dataset: { service: s.name } },
      h('th', { scope: 'row' }, h('a', { href: route('services', s.name) }, s.name)),
      h('td', null, h('a', { href: routeWith({ pipeline: s.pipeline }, 'runs') }, s.pipeline)),
      h('td', null, h('code', null, s.repo)),
      h('td', null, stateBadge(s)),
      h('td', null, last ? [h('a', { href: route('services', s.name, 'pipelines', last.id) }, last.id), ' ', executionBadge(last)] : h('span', { class: 'help' }, 'never run')),
      h('td', null, last ? time(last.created_ms) : '')));
    if (!rows.length) rows.push(h('tr', null, h('td', { colspan: 6, class: 'empty' }, 'No pipeline of this server has a service.')));
    fill(body, ...rows);
    live.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    return docs.some((d) => d.last && isActive(d.last));
  }
  const poller = poll(load, { activeMs: ACTIVE_MS, idleMs: IDLE_MS }, await load());
  return () => poller.stop();
}

/** A service: its facts, its pipelines (the Pipelines tab of seed 001) and its settings. */
async function service(main, r, session) {
  const name = r.service;
  const doc = await get(`/services/${seg(name)}`);
  let svc = doc.service;
  const operator = session.may('operator', svc.pipeline);
  let wanted = (r.query.get('environments') || '').split(',').filter((e) => svc.environments.includes(e));

  const head = h('div', { class: 'run-head' });
  function renderHead() {
    fill(head,
      h('p', { class: 'crumbs' }, h('a', { href: route('services') }, 'Services'), ` / ${svc.name}`),
      h('h1', null, `${svc.name} `, stateBadge(svc)),
      h('dl', { class: 'facts' },
        fact('Pipeline', h('a', { href: routeWith({ pipeline: svc.pipeline }, 'runs') }, svc.pipeline)),
        fact('Repository', h('code', null, svc.repo)),
        fact('Branches', svc.branches.join(', ') || '—'),
        svc.tags.length ? fact('Tags', svc.tags.join(', ')) : null,
        fact('Pull requests', svc.pull_requests),
        svc.paths.length ? fact('Paths', svc.paths.join(', ')) : null,
        fact('Environments', svc.environments.join(' → ') || '—'),
        svc.poll_s ? fact('Polled', [`every ${svc.poll_s} s`, svc.last_poll_ms ? [', last ', time(svc.last_poll_ms)] : '']) : null));
  }

  // The settings: two switches, and who changed them last.
  const enabled = h('input', { type: 'checkbox', role: 'switch', id: 'set-enabled', disabled: !operator, onchange: (e) => change('enabled', e.target) });
  const deploys = h('input', { type: 'checkbox', role: 'switch', id: 'set-deploys', disabled: !operator, onchange: (e) => change('deploys', e.target) });
  const changedBy = h('p', { class: 'help', id: 'settings-by' });
  const settingsError = h('p', { class: 'error', role: 'alert', hidden: true });
  const settings = h('section', { class: 'card settings', 'aria-labelledby': 'settings-h' },
    h('h2', { id: 'settings-h' }, 'Settings'),
    h('div', { class: 'switches' },
      h('label', { for: 'set-enabled' }, enabled, ' Pipelines enabled'),
      h('p', { class: 'help' }, 'Off: no pipeline runs, pushed or triggered here.'),
      h('label', { for: 'set-deploys' }, deploys, ' Deployments enabled'),
      h('p', { class: 'help' }, 'Off: pipelines build their artifact and deploy nothing.')),
    changedBy, settingsError,
    operator ? null : h('p', { class: 'help' }, 'Operators and admins change these.'));
  function renderSettings() {
    enabled.checked = svc.enabled;
    deploys.checked = svc.deploys;
    if (svc.settings_changed_by) {
      const when = svc.settings_changed_ms ? [' ', time(svc.settings_changed_ms)] : [];
      fill(changedBy, `Last changed by ${svc.settings_changed_by}`, ...when, '.');
    } else {
      changedBy.textContent = 'As the pipeline file says: not changed here.';
    }
  }
  async function change(field, input) {
    input.disabled = true;
    settingsError.hidden = true;
    try {
      svc = await post(`/services/${seg(name)}/settings`, { [field]: input.checked });
      announce(`${field === 'enabled' ? 'Pipelines' : 'Deployments'} ${input.checked ? 'enabled' : 'disabled'}`);
    } catch (e) {
      settingsError.textContent = e.message;
      settingsError.hidden = false;
    }
    input.disabled = false;
    renderHead();
    renderSettings();
  }

  // The pipelines: a Trigger button, the environment filter, the table.
  // (Shown when there is a choice: a service of one environment has none.)
  const filter = h('fieldset', { class: 'filters env-filter', hidden: svc.environments.length < 2 }, h('legend', null, 'Environments'),
    svc.environments.map((env) => h('label', null,
      h('input', { type: 'checkbox', name: 'environment', value: env, checked: wanted.includes(env), dataset: { environment: env } }), ` ${env}`)));
  filter.addEventListener('change', () => {
    wanted = [...filter.querySelectorAll('input:checked')].map((i) => i.value);
    // The address says the filter (to share it) without drawing the page again.
    history.replaceState(null, '', routeWith({ environments: wanted.join(',') }, 'services', name));
    poller.now();
  });
  const tools = h('div', { class: 'toolbar' }, filter,
    operator ? h('button', { type: 'button', class: 'primary', id: 'trigger-pipeline', onclick: trigger }, 'Trigger pipeline…') : null);
  const body = h('tbody');
  const live = h('p', { class: 'help', id: 'executions-updated' });
  const table = h('table', { class: 'executions', id: 'executions' },
    h('caption', { class: 'visually-hidden' }, `Pipelines of ${svc.name}, most recent first`),
    h('thead', null, h('tr', null, ['Pipeline', 'Commit', 'Type', 'Status', 'Duration', 'When', 'Branch', 'Author']
      .map((t) => h('th', { scope: 'col' }, t)))),
    body);
  fill(main, head,
    h('section', { 'aria-labelledby': 'executions-h' }, h('h2', { id: 'executions-h' }, 'Pipelines'), tools, live, h('div', { class: 'scroll' }, table)),
    settings);
  renderHead();
  renderSettings();

  // Rows are kept by execution, and only their cells change: a link that
  // has the focus keeps it while the list follows the pipelines.
  const rows = new Map();
  function row(x) {
    let kept = rows.get(x.id);
    if (!kept) {
      kept = { tr: h('tr', { dataset: { execution: x.id } }), cells: [] };
      kept.tr.append(h('th', { scope: 'row' }, h('a', { href: route('services', name, 'pipelines', x.id) }, x.id)));
      for (let k = 0; k < 7; k++) kept.cells.push(kept.tr.appendChild(h('td')));
      kept.cells[0].className = 'message';
      rows.set(x.id, kept);
    }
    kept.tr.dataset.status = x.status;
    const c = x.commit;
    const [commit, kind, status, lasted, when, ref, author] = kept.cells;
    fill(commit, h('code', { class: 'sha', title: c.sha }, shortSha(c.sha)), ' ', c.message);
    kind.textContent = kindLabel(x.kind);
    fill(status, executionBadge(x));
    lasted.textContent = took(x);
    fill(when, time(x.created_ms));
    ref.textContent = refOf(c);
    author.textContent = c.author || x.started_by;
    return kept.tr;
  }
  const empty = h('tr', null, h('td', { colspan: 8, class: 'empty' }, 'No pipeline has run yet.'));
  async function load() {
    const q = new URLSearchParams({ limit: '100' });
    if (wanted.length) q.set('environments', wanted.join(','));
    const list = await get(`/services/${seg(name)}/executions?${q}`);
    const shown = list.map(row);
    for (const id of [...rows.keys()]) if (!list.some((x) => x.id === id)) rows.delete(id);
    const wantedRows = shown.length ? shown : [empty];
    const same = wantedRows.length === body.children.length && wantedRows.every((tr, k) => body.children[k] === tr);
    if (!same) fill(body, ...wantedRows);
    live.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    return list.some(isActive);
  }

  /** The Trigger pipeline dialog: a branch (the first the service builds), and a commit if not its head. */
  async function trigger() {
    const branches = h('datalist', { id: 'tp-branches' }, svc.branches.filter((b) => !/[*?[]/.test(b)).map((b) => h('option', { value: b })));
    const branch = h('input', { id: 'tp-branch', name: 'branch', list: 'tp-branches', spellcheck: 'false',
      value: branches.firstChild ? branches.firstChild.value : '' });
    const commit = h('input', { id: 'tp-commit', name: 'commit', spellcheck: 'false', placeholder: 'the branch’s head', size: 16 });
    const error = h('p', { class: 'error', role: 'alert', hidden: true });
    const fields = h('div', { class: 'form' },
      h('label', { for: 'tp-branch' }, 'Branch'), h('div', null, branch, branches),
      h('label', { for: 'tp-commit' }, 'Commit SHA'), commit,
      error);
    for (;;) {
      const answer = await dialog(`Trigger a pipeline of ${svc.name}`, fields, [
        { label: 'Trigger', value: 'start', class: 'primary', id: 'tp-start' },
        { label: 'Close', value: 'close' },
      ]);
      if (answer !== 'start') return;
      try {
        const want = { branch: branch.value.trim() };
        if (commit.value.trim()) want.commit = commit.value.trim();
        const created = await post(`/services/${seg(name)}/executions`, want);
        announce(`Pipeline ${created.id} ${created.status}`);
        poller.now();
        return;
      } catch (e) {
        error.textContent = e.message;
        error.hidden = false;
      }
    }
  }

  // Asked again after a while even when nothing is in progress: a push may start one.
  const poller = poll(load, { activeMs: ACTIVE_MS, idleMs: IDLE_MS }, await load());
  return () => poller.stop();
}

/** One fact of a header: a term and its value, side by side. */
function fact(term, value) {
  return h('div', null, h('dt', null, term), h('dd', null, value));
}
