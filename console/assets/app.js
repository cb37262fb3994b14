// The console: hash routes to pages, the session, and the header. Each
// page module exports `render(main, route, session)`, which may return a
// function that stops what the page keeps running (event streams, timers).

import { request, setCsrf, whenSignedOut } from './api.js';
import { h, fill } from './dom.js';
import * as login from './pages/login.js';
import * as pipelines from './pages/pipelines.js';
import * as runs from './pages/runs.js';
import * as run from './pages/run.js';
import * as node from './pages/node.js';
import * as state from './pages/state.js';
import * as services from './pages/services.js';
import * as execution from './pages/execution.js';

// What the benchmark and the browser tests read: when the run page's graph
// was first drawn, and how the page keeps up with the run's events.
window.stackpipe = { marks: {}, stats: { events: 0, final: 0, maxApplyLagMs: 0 }, panBy: async () => {}, dagView: () => null };

const ROLES = ['viewer', 'operator', 'admin'];

/** The signed-in user, their role and the CSRF token, or null. */
let session = null;
let stop = null;

/** Whether the session's role is `role` or above on `pipeline`. */
function may(role, pipeline) {
  if (!session) return false;
  const covers = !session.pipelines.length || (pipeline !== undefined && session.pipelines.includes(pipeline));
  const applies = pipeline === undefined ? (!session.pipelines.length || role === 'viewer') : covers;
  return applies && ROLES.indexOf(session.role) >= ROLES.indexOf(role);
}

/** The route of the current hash: its path segments and its query. */
function current() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, query: new URLSearchParams(query || '') };
}

async function loadSession() {
  try {
    const { data } = await request('/session');
    session = { ...data, may };
    setCsrf(data.csrf);
  } catch {
    session = null;
  }
  header();
}

function header() {
  document.getElementById('nav').hidden = !session;
  document.getElementById('who').hidden = !session;
  if (session) {
    document.getElementById('who-name').textContent = session.user;
    document.getElementById('who-role').textContent = session.role;
  }
}

async function show() {
  if (stop) {
    try { stop(); } catch { /* the page is gone either way */ }
    stop = null;
  }
  const main = document.getElementById('main');
  const route = current();
  if (!session && route.parts[0] !== 'login') {
    const back = location.hash && !location.hash.startsWith('#/login') ? location.hash : '#/runs';
    location.replace('#/login?next=' + encodeURIComponent(back));
    return;
  }
  const [first, a, b, c] = route.parts;
  let page;
  let params = {};
  if (first === 'login') page = login;
  else if (first === 'pipelines') { page = pipelines; params = { plan: b === 'plan' ? a : undefined }; }
  else if (first === 'runs' && a && b && c) { page = node; params = { run: a, environment: b, node: c }; }
  else if (first === 'runs' && a) { page = run; params = { run: a }; }
  else if (first === 'runs') page = runs;
  else if (first === 'state') { page = state; params = { environment: a, resource: b }; }
  else if (first === 'services' && a && b === 'pipelines' && c) { page = execution; params = { service: a, execution: c }; }
  else if (first === 'services') { page = services; params = { service: a }; }
  else {
    location.replace('#/runs');
    return;
  }
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === first) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  fill(main, h('p', { class: 'loading' }, 'Loading…'));
  try {
    stop = (await page.render(main, { ...params, query: route.query }, session, { signedIn, refresh: show })) || null;
  } catch (e) {
    fill(main, h('h1', null, 'Something went wrong'), h('p', { class: 'error', role: 'alert' }, e.message));
  }
  if (main.dataset.focus !== 'keep') main.focus({ preventScroll: true });
}

/** After a login: the session, then where the user was going. */
async function signedIn(next) {
  await loadSession();
  location.hash = next && next.startsWith('#/') && !next.startsWith('#/login') ? next : '#/runs';
}

whenSignedOut(() => {
  if (session) {
    session = null;
    header();
    show();
  }
});

document.getElementById('logout').addEventListener('click', async () => {
  try {
    await request('/session', { method: 'DELETE' });
  } catch { /* logged out either way */ }
  session = null;
  setCsrf('');
  header();
  location.hash = '#/login';
});

document.getElementById('skip').addEventListener('click', (e) => {
  e.preventDefault();
  document.getElementById('main').focus();
});

window.addEventListener('hashchange', show);
loadSession().then(show);
