// Pipelines: each with its environments in promotion order and the status
// of the last run in each; a Run button (for those who may start runs)
// starts a plan, deploy or undeploy with an environment, vars and a message.

import { get, post } from '../api.js';
import { h, fill, route, routeWith, time, dialog, announce } from '../dom.js';
import { badgeClass } from '../status.js';

/** The last plan this page asked for (a plan is an answer, not a record: it is not kept by the server). */
let lastPlan = null;

export async function render(main, r, session) {
  if (r.plan) {
    showPlan(main, r.plan, lastPlan && lastPlan.pipeline === r.plan ? lastPlan : null);
    return null;
  }
  const body = h('div', { class: 'pipelines' });
  fill(main, h('h1', null, 'Pipelines'), body);
  async function load() {
    const [pipelines, runs] = await Promise.all([get('/pipelines'), get('/runs?limit=1000')]);
    if (!pipelines.length) {
      fill(body, h('p', { class: 'empty' }, 'This server has no pipelines (start it with --pipelines DIR).'));
      return;
    }
    fill(body, ...pipelines.map((p) => card(p, runs.filter((x) => x.pipeline === p.name), session)));
  }
  await load();
  const events = new EventSource('/api/v1/events');
  let timer = null;
  const refresh = () => {
    if (!timer) timer = setTimeout(() => { timer = null; load().catch(() => {}); }, 500);
  };
  for (const kind of ['run_started', 'environment_finished', 'run_finished']) events.addEventListener(kind, refresh);
  return () => { events.close(); clearTimeout(timer); };
}

function card(p, runs, session) {
  // The last run that took each environment, and how it went there.
  const last = (env) => {
    for (const run of runs) {
      const o = (run.outcomes || []).find((x) => x.name === env);
      if (o) return { run, status: o.status };
      if (run.status === 'running' && run.environments.includes(env)) return { run, status: 'pending' };
    }
    return null;
  };
  const envs = h('ol', { class: 'promotion', 'aria-label': `Environments of ${p.name}, in promotion order` },
    p.environments.map((env) => {
      const l = last(env);
      return h('li', { dataset: { environment: env, status: l ? l.status : 'none' } },
        h('span', { class: 'env-name' }, env),
        l ? h('a', { href: route('runs', l.run.id), class: badgeClass(l.status) }, l.status) : h('span', { class: 'badge none' }, 'never run'),
        l ? h('span', { class: 'when' }, ' ', time(l.run.started_ms)) : null);
    }));
  const actions = h('div', { class: 'actions' },
    h('a', { href: routeWith({ pipeline: p.name }, 'runs') }, 'Runs'),
    h('a', { href: routeWith({ pipeline: p.name }, 'state') }, 'State'));
  if (session.may('operator', p.name) && !p.error) {
    actions.append(h('button', { type: 'button', class: 'primary', id: `run-${p.name}`, onclick: () => trigger(p) }, 'Run…'));
  }
  return h('section', { class: 'card pipeline', dataset: { pipeline: p.name }, 'aria-labelledby': `p-${p.name}` },
    h('h2', { id: `p-${p.name}` }, p.name),
    h('p', { class: 'help' }, `${p.resources} resources · ${p.file}`),
    p.error ? h('pre', { class: 'error' }, p.error) : envs,
    actions);
}

/** A plan's answer: what a deploy would change, environment by environment. */
function showPlan(main, name, plan) {
  if (!plan) {
    fill(main, h('p', { class: 'crumbs' }, h('a', { href: route('pipelines') }, 'Pipelines'), ` / ${name}`),
      h('h1', null, `Plan of ${name}`),
      h('p', null, 'A plan is shown once, when it is made; start one with the Run button of the pipeline.'));
    return;
  }
  const counts = {};
  for (const c of plan.changes) counts[c.change] = (counts[c.change] || 0) + 1;
  fill(main,
    h('p', { class: 'crumbs' }, h('a', { href: route('pipelines') }, 'Pipelines'), ` / ${plan.pipeline}`),
    h('h1', { id: 'plan-h' }, `Plan of ${plan.pipeline} `, h('span', { class: badgeClass(plan.status), 'data-plan-status': plan.status }, plan.status)),
    h('p', null, `Planned by ${plan.planned_by}`, plan.message ? ` — ${plan.message}` : '', '. Nothing was applied.'),
    h('p', { id: 'plan-counts' }, Object.keys(counts).length ? Object.entries(counts).map(([k, n]) => `${n} to ${k}`).join(', ') : 'No changes.'),
    plan.failures.length ? h('section', { 'aria-labelledby': 'plan-fail-h' }, h('h2', { id: 'plan-fail-h' }, 'Could not be planned'),
      h('ul', null, plan.failures.map((f) => h('li', { class: 'error' }, `${f.environment} / ${f.resource}: ${f.error || ''}`)))) : null,
    plan.warnings.length ? h('section', null, h('h2', null, 'Warnings'),
      h('ul', null, plan.warnings.map((w) => h('li', null, `${w.environment} / ${w.resource}: ${w.text}`)))) : null,
    h('table', { class: 'plan', id: 'plan' },
      h('thead', null, h('tr', null, ['Environment', 'Resource', 'Type', 'Change', 'Attributes'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', null, plan.changes.map((c) => h('tr', { dataset: { resource: c.resource, environment: c.environment, change: c.change } },
        h('td', null, c.environment), h('th', { scope: 'row' }, c.resource), h('td', null, c.type), h('td', null, c.change),
        h('td', null, c.changes.map((a) => h('div', null, h('code', null, a.path), ': ',
          a.sensitive ? '(sensitive)' : `${a.before ?? '—'} → ${a.after_unknown ? '(known after apply)' : (a.after ?? '—')}`))))))),
    h('details', null, h('summary', null, 'As text'), h('pre', { class: 'json' }, plan.text)));
  announce(`Plan of ${plan.pipeline}: ${plan.status}`);
}

/** The trigger dialog: what to run, where, with which vars and message. */
async function trigger(p) {
  const op = h('select', { id: 't-operation', name: 'operation' },
    ['deploy', 'undeploy', 'plan'].map((o) => h('option', { value: o }, o)));
  const env = h('select', { id: 't-environment', name: 'environment' },
    h('option', { value: '' }, 'every environment, in order'),
    p.environments.map((e) => h('option', { value: e }, e)));
  const vars = h('textarea', { id: 't-vars', name: 'vars', rows: 3, placeholder: 'name=value, one a line', spellcheck: 'false' });
  const message = h('input', { id: 't-message', name: 'message', maxlength: 4096 });
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const fields = h('div', { class: 'form' },
    h('label', { for: 't-operation' }, 'Operation'), op,
    h('label', { for: 't-environment' }, 'Environment'), env,
    h('label', { for: 't-vars' }, 'Vars'), vars,
    h('label', { for: 't-message' }, 'Message'), message, error);
  for (;;) {
    const answer = await dialog(`Run ${p.name}`, fields, [
      { label: 'Start', value: 'start', class: 'primary', id: 't-start' },
      { label: 'Close', value: 'close' },
    ]);
    if (answer !== 'start') return;
    const parsed = {};
    const bad = [];
    for (const line of vars.value.split('\n').map((l) => l.trim()).filter(Boolean)) {
      const at = line.indexOf('=');
      if (at < 1) bad.push(line);
      else parsed[line.slice(0, at).trim()] = line.slice(at + 1);
    }
    try {
      if (bad.length) throw new Error(`a var is written name=value: ${bad.join(', ')}`);
      const body = { vars: parsed };
      if (env.value) body.environment = env.value;
      if (message.value.trim()) body.message = message.value.trim();
      if (op.value === 'plan') {
        error.textContent = '';
        lastPlan = await post(`/pipelines/${encodeURIComponent(p.name)}/plan`, body);
        location.hash = route('pipelines', p.name, 'plan');
        return;
      }
      const created = await post('/runs', { ...body, pipeline: p.name, operation: op.value });
      announce(`Run ${created.run} ${created.status}`);
      location.hash = route('runs', created.run);
      return;
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
    }
  }
}
