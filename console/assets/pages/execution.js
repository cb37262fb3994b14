// A service's pipeline execution (`#/services/NAME/pipelines/ID`, where
// commit statuses posted to forges link): its commit and trigger, the build
// stage with its log, the deploy stage with its run, each environment and
// its log; gates waiting for approval are decided here. While it runs the
// page asks again every few seconds and appends the new log lines only.

import { get, post, seg } from '../api.js';
import { h, fill, route, routeWith, time, duration, dialog, announce } from '../dom.js';
import { badgeClass } from '../status.js';
import { poll } from '../poll.js';
import { decide } from './gate.js';
import { executionBadge, isActive, refOf, shortSha, kindLabel, took } from './services.js';

const ACTIVE_MS = 1500;

const TRIGGERS = { push: 'a push', tag: 'a tag', pull_request: 'a pull request', poll: 'polling', manual: 'a manual trigger', rerun: 'a rerun' };

export async function render(main, r, session) {
  const id = r.execution;
  let x = await get(`/executions/${seg(id)}`);
  const operator = session.may('operator', x.pipeline);

  const head = h('div', { class: 'run-head' });
  const buildHead = h('div', { class: 'stage-head' });
  const deployHead = h('div', { class: 'stage-head' });
  const envs = h('ol', { class: 'promotion', id: 'deployments', 'aria-label': 'Environments in promotion order' });
  const gates = h('section', { class: 'gates', 'aria-labelledby': 'gates-h', hidden: true });
  const buildLog = h('ol', { class: 'log', id: 'build-log', 'aria-label': 'Build log', tabindex: 0 });
  const deployLog = h('ol', { class: 'log', id: 'deploy-log', 'aria-label': 'Deploy log', tabindex: 0 });
  fill(main, head,
    h('section', { class: 'stage', id: 'build', 'aria-labelledby': 'build-h' }, buildHead, buildLog),
    h('section', { class: 'stage', id: 'deploy', 'aria-labelledby': 'deploy-h' }, deployHead, envs, gates, deployLog));

  function renderHead() {
    // A button with the focus keeps it when the header is drawn again.
    const focused = head.contains(document.activeElement) ? document.activeElement.id : '';
    const c = x.commit;
    const actions = h('div', { class: 'actions' });
    if (operator && isActive(x)) actions.append(h('button', { type: 'button', class: 'danger', id: 'cancel-execution', onclick: cancel }, 'Cancel…'));
    if (operator && !isActive(x)) actions.append(h('button', { type: 'button', id: 'rerun-execution', onclick: rerun }, 'Rerun'));
    fill(head,
      h('p', { class: 'crumbs' }, h('a', { href: route('services') }, 'Services'), ' / ',
        h('a', { href: route('services', x.service) }, x.service), ` / ${x.id}`),
      h('h1', null, `Pipeline ${x.id} `, executionBadge(x)),
      h('p', { class: 'commit' }, h('code', { class: 'sha', title: c.sha }, shortSha(c.sha)), ' ', h('span', { class: 'message', id: 'commit-message' }, c.message)),
      h('dl', { class: 'facts' },
        fact('Type', kindLabel(x.kind)),
        fact('Branch', refOf(c)),
        fact('Author', c.author || '—'),
        fact('Commit', h('code', null, c.sha)),
        fact('Trigger', `${TRIGGERS[x.trigger] || x.trigger}, by ${x.started_by}`),
        fact('Created', time(x.created_ms)),
        fact('Duration', h('span', { id: 'execution-duration' }, took(x))),
        x.rerun_of ? fact('Rerun of', h('a', { href: route('services', x.service, 'pipelines', x.rerun_of) }, x.rerun_of)) : null,
        x.cancelled_by ? fact('Cancelled by', x.cancelled_by) : null,
        x.artifact ? fact('Artifact', [h('code', null, x.artifact.tag), ` ${x.artifact.kind}, ${x.artifact.bytes} bytes, `,
          h('code', { title: x.artifact.digest }, x.artifact.digest.slice(0, 19))]) : null),
      actions);
    if (focused) document.getElementById(focused)?.focus();
  }

  function stageHead(which, stage, extra) {
    return [
      h('h2', { id: `${which}-h` }, which === 'build' ? 'Build ' : 'Deploy ',
        h('span', { class: badgeClass(stage.status), dataset: { stageStatus: stage.status } }, stage.status)),
      h('dl', { class: 'facts' },
        stage.started_ms ? fact('Started', time(stage.started_ms)) : null,
        stage.started_ms ? fact('Duration', duration((stage.ended_ms || Date.now()) - stage.started_ms)) : null,
        extra),
      stage.note ? h('p', { class: stage.status === 'failed' ? 'error' : 'note', id: `${which}-note` }, stage.note) : null,
    ];
  }

  function renderStages() {
    fill(buildHead, stageHead('build', x.build));
    fill(deployHead, stageHead('deploy', x.deploy, x.run ? fact('Run', h('a', { href: route('runs', x.run), id: 'deploy-run' }, x.run)) : null));
    fill(envs, ...x.deployments.map((d) => h('li', { dataset: { environment: d.name, status: d.status } },
      h('span', { class: 'env-name' }, d.name),
      h('span', { class: badgeClass(d.status) }, d.status === 'waiting' ? 'waiting for approval' : d.status),
      d.reason ? h('span', { class: 'help reason' }, ` ${d.reason}`) : null)));
    if (!x.deployments.length) envs.append(h('li', { class: 'empty' }, 'No environment: this pipeline builds only.'));
  }

  // The environments waiting for approval, drawn again only when that
  // changes (a button about to be pressed stays the same element); who may
  // decide is the run's graph's to say, asked once.
  let rules = null;
  let gatesShown = null;
  async function renderGates() {
    const waiting = x.status === 'running' && x.run ? x.deployments.filter((d) => d.status === 'waiting') : [];
    const key = JSON.stringify(waiting.map((d) => d.name));
    if (key === gatesShown) return;
    if (waiting.length && !rules) {
      try {
        const graph = await get(`/runs/${seg(x.run)}/graph`);
        rules = Object.fromEntries(graph.environments.map((e) => [e.name, e]));
      } catch {
        // Not known here (its pipeline no longer compiles): an operator is
        // offered the buttons, and the server says whether they may.
        rules = Object.fromEntries(x.deployments.map((d) => [d.name, { may_approve: operator, may_reject: operator }]));
      }
    }
    gatesShown = key;
    gates.hidden = !waiting.length;
    if (!waiting.length) {
      fill(gates);
      return;
    }
    fill(gates, h('h3', { id: 'gates-h' }, 'Waiting for approval'),
      h('ul', null, waiting.map((d) => {
        const m = rules[d.name] || {};
        const g = { environment: d.name };
        const act = async (what) => {
          if (await decide(x.run, g, what)) poller.now();
        };
        return h('li', { class: 'gate card', dataset: { gate: d.name } },
          h('p', null, h('strong', null, d.name), ' waits for approval before it is deployed.'),
          h('div', { class: 'actions' },
            m.may_approve ? h('button', { type: 'button', class: 'primary', dataset: { approve: d.name }, onclick: () => act('approve') }, 'Approve…') : null,
            m.may_reject ? h('button', { type: 'button', class: 'danger', dataset: { reject: d.name }, onclick: () => act('reject') }, 'Reject…') : null,
            !m.may_approve && !m.may_reject ? h('span', { class: 'help' }, `Approvers: ${m.approvers || 'operators'}.`) : null,
            h('a', { href: routeWith({ env: d.name }, 'runs', x.run) }, 'Open the run')));
      })));
  }

  // The logs: each line once, appended as it comes (kept at the end while
  // the reader is at the end).
  let buildLines = 0;
  let deployLines = 0;
  function append(list, lines, line) {
    const atEnd = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.querySelector('.empty')?.remove();
    list.append(...lines.map(line));
    if (atEnd) list.scrollTop = list.scrollHeight;
  }
  const level = (l) => l.level || 'info';
  const buildLine = (l) => h('li', { class: `level-${level(l)}`, dataset: { level: level(l) } },
    level(l) !== 'info' ? h('span', { class: 'lvl' }, `${level(l)}: `) : null, h('span', { class: 'text' }, l.text));
  const deployLine = (l) => h('li', { class: `level-${level(l)}`, dataset: { environment: l.environment, node: l.node, level: level(l) } },
    h('span', { class: 'op' }, `${l.environment}/${l.node} ${l.op}`), ' ',
    level(l) !== 'info' ? h('span', { class: 'lvl' }, `${level(l)}: `) : null,
    l.plugin ? h('span', { class: 'plugin' }, `${l.plugin}: `) : null, h('span', { class: 'text' }, l.text));

  async function load() {
    const [nx, logs] = await Promise.all([
      get(`/executions/${seg(id)}`),
      get(`/executions/${seg(id)}/logs?build_after=${buildLines}&deploy_after=${deployLines}`),
    ]);
    const ended = isActive(x) && !isActive(nx);
    x = nx;
    // A line already shown is never shown again: the counts say where each log is.
    append(buildLog, logs.build.slice(0, Math.max(0, logs.build_lines - buildLines)), buildLine);
    buildLines = Math.max(buildLines, logs.build_lines);
    append(deployLog, logs.deploy.slice(0, Math.max(0, logs.deploy_lines - deployLines)), deployLine);
    deployLines = Math.max(deployLines, logs.deploy_lines);
    renderHead();
    renderStages();
    await renderGates();
    if (ended) announce(`Pipeline ${x.id} ${x.status}`);
    // The logs are whole once their answer says the execution ended.
    return logs.status === 'queued' || logs.status === 'running';
  }

  async function cancel() {
    const answer = await dialog(`Cancel pipeline ${x.id}?`,
      h('p', null, 'A build in progress is stopped and nothing is deployed; a deployment in flight finishes, and the environments after it are cancelled.'),
      [{ label: 'Cancel the pipeline', value: 'yes', class: 'danger', id: 'cancel-confirm' }, { label: 'Keep it running', value: 'no' }]);
    if (answer !== 'yes') return;
    try {
      await post(`/executions/${seg(id)}/cancel`, {});
      announce(`Pipeline ${x.id} is being cancelled`);
      poller.now();
    } catch (e) {
      await dialog('Not cancelled', h('p', { class: 'error' }, e.message), [{ label: 'OK', value: 'ok' }]);
    }
  }

  async function rerun() {
    try {
      const created = await post(`/executions/${seg(id)}/rerun`, {});
      location.hash = route('services', created.service, 'pipelines', created.id);
    } catch (e) {
      await dialog('Not started', h('p', { class: 'error' }, e.message), [{ label: 'OK', value: 'ok' }]);
    }
  }

  const active = await load();
  if (!buildLines) buildLog.append(h('li', { class: 'empty' }, 'No build output yet.'));
  if (!deployLines) deployLog.append(h('li', { class: 'empty' }, 'No deploy log yet.'));
  const poller = poll(async () => {
    const more = await load();
    if (!more) clearInterval(clock);
    return more;
  }, { activeMs: ACTIVE_MS, idleMs: null }, active);
  // Durations move on with the clock between answers.
  const clock = active && setInterval(() => {
    const el = document.getElementById('execution-duration');
    if (el) el.textContent = took(x);
  }, 1000);
  return () => {
    poller.stop();
    clearInterval(clock);
  };
}

/** One fact of a header: a term and its value, side by side. */
function fact(term, value) {
  return h('div', null, h('dt', null, term), h('dd', null, value));
}
