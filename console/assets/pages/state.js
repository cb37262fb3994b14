// State: the resources each pipeline has deployed, per environment, with
// their outputs (secrets masked by the server); the locks held now; and a
// resource's history (every job that touched it).

import { get, seg } from '../api.js';
import { h, fill, route, routeWith, time } from '../dom.js';
import { badgeClass } from '../status.js';
import { diffView } from './node.js';

export async function render(main, r) {
  if (r.environment && r.resource) return history(main, r);
  const wanted = r.query.get('pipeline') || '';
  const [doc, pipelines] = await Promise.all([get('/state/resources'), get('/pipelines')]);
  const names = [...new Set([...pipelines.map((p) => p.name), ...doc.resources.map(([k]) => k.pipeline)])].sort();
  const pick = h('select', { id: 'state-pipeline', onchange: (e) => { location.hash = routeWith({ pipeline: e.target.value }, 'state'); } },
    h('option', { value: '' }, 'every pipeline'), names.map((p) => h('option', { value: p, selected: p === wanted }, p)));
  const sections = [];
  for (const p of names.filter((x) => !wanted || x === wanted)) {
    const mine = doc.resources.filter(([k]) => k.pipeline === p);
    const pipeline = pipelines.find((x) => x.name === p);
    const order = pipeline ? pipeline.environments : [];
    const envs = [...new Set([...order, ...mine.map(([k]) => k.environment)])];
    let outputs = {};
    if (pipeline && !pipeline.error) {
      try { outputs = await get(`/pipelines/${seg(p)}/outputs`); } catch { outputs = {}; }
    }
    sections.push(h('section', { class: 'card', dataset: { pipeline: p }, 'aria-labelledby': `s-${p}` },
      h('h2', { id: `s-${p}` }, p),
      envs.map((env) => {
        const rows = mine.filter(([k]) => k.environment === env);
        const out = (outputs[env] && outputs[env].outputs) || {};
        return h('div', { class: 'env-state', dataset: { environment: env } },
          h('h3', null, env),
          rows.length ? h('table', { class: 'resources' },
            h('caption', { class: 'visually-hidden' }, `Resources of ${p} in ${env}`),
            h('thead', null, h('tr', null, ['Resource', 'Type', 'Outputs', 'Deployed by', 'Updated'].map((t) => h('th', { scope: 'col' }, t)))),
            h('tbody', null, rows.map(([k, rec]) => h('tr', { dataset: { resource: k.resource } },
              h('th', { scope: 'row' }, h('a', { href: routeWith({ pipeline: p }, 'state', env, k.resource) }, k.resource)),
              h('td', null, `${rec.plugin}.${rec.kind}`),
              h('td', null, h('pre', { class: 'json small' }, JSON.stringify(rec.outputs))),
              h('td', null, h('a', { href: route('runs', rec.run_id) }, rec.run_id)),
              h('td', null, time(rec.updated_ms))))))
            : h('p', { class: 'help' }, 'Nothing deployed.'),
          Object.keys(out).length ? h('div', null, h('h4', null, 'Outputs'),
            h('dl', { class: 'meta' }, Object.entries(out).map(([name, v]) => [h('dt', null, name), h('dd', null, h('code', null, JSON.stringify(v)))]))) : null);
      })));
  }
  const locks = doc.locks.filter(([k]) => !wanted || k.pipeline === wanted);
  fill(main, h('h1', null, 'State'),
    h('div', { class: 'filters' }, h('div', { class: 'field' }, h('label', { for: 'state-pipeline' }, 'Pipeline'), pick)),
    ...(sections.length ? sections : [h('p', { class: 'empty' }, 'Nothing is deployed.')]),
    h('section', { class: 'card', 'aria-labelledby': 'locks-h' }, h('h2', { id: 'locks-h' }, 'Locks'),
      locks.length ? h('table', { class: 'locks', id: 'locks' },
        h('thead', null, h('tr', null, ['Pipeline', 'Environment', 'Resource', 'Held by', 'Since'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', null, locks.map(([k, holder]) => h('tr', null, h('td', null, k.pipeline), h('td', null, k.environment), h('td', null, k.resource),
          h('td', null, h('a', { href: route('runs', holder.run_id) }, holder.run_id)), h('td', null, time(holder.since_ms))))))
        : h('p', { class: 'help' }, 'No resource is locked.')));
  return null;
}

async function history(main, r) {
  const pipeline = r.query.get('pipeline');
  const q = pipeline ? `?pipeline=${encodeURIComponent(pipeline)}` : '';
  const doc = await get(`/state/history/${seg(r.environment)}/${seg(r.resource)}${q}`);
  fill(main, 
    h('p', { class: 'crumbs' }, h('a', { href: routeWith({ pipeline }, 'state') }, 'State'), ` / ${doc.pipeline || ''} / ${r.environment}`),
    h('h1', null, `History of ${r.resource}`),
    doc.jobs.length ? h('ol', { class: 'history', id: 'history' }, doc.jobs.map((j) => h('li', { class: 'card', dataset: { run: j.run } },
      h('p', null, h('a', { href: route('runs', j.run, j.environment, j.resource) }, j.run), ' ', j.operation, ' ',
        h('span', { class: badgeClass(j.status) }, j.status), j.change ? ` · ${j.change}` : '', ' · by ', h('strong', null, j.started_by), ' ', time(j.started_ms)),
      j.message ? h('p', { class: 'message' }, j.message) : null,
      j.error ? h('pre', { class: 'error' }, j.error) : null,
      j.diff ? diffView(j.diff) : null)))
      : h('p', { class: 'empty' }, 'No job has touched it.'));
  return null;
}
