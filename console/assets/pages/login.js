// The login page: one field for a token from `stackpipe user add`. The
// server answers with an HttpOnly session cookie; the token itself is
// kept nowhere in the page.

import { request } from '../api.js';
import { h, fill } from '../dom.js';

export async function render(main, route, session, app) {
  const next = route.query.get('next') || '#/runs';
  const error = h('p', { class: 'error', role: 'alert', id: 'login-error', hidden: true });
  const token = h('input', {
    id: 'token', name: 'token', type: 'password', autocomplete: 'current-password', required: true,
    spellcheck: 'false', 'aria-describedby': 'token-help login-error',
  });
  const form = h('form', { id: 'login', class: 'login card' },
    h('h1', null, 'Log in to stackpipe'),
    h('label', { for: 'token' }, 'Token'),
    token,
    h('p', { class: 'help', id: 'token-help' }, 'The token `stackpipe user add NAME --role ROLE` printed for you.'),
    error,
    h('button', { type: 'submit', class: 'primary' }, 'Log in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.hidden = true;
    try {
      await request('/session', { method: 'POST', body: { token: token.value.trim() } });
      token.value = '';
      await app.signedIn(next);
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      token.focus();
    }
  });
  fill(main, form);
  if (session) main.prepend(h('p', { class: 'note' }, `You are logged in as ${session.user}.`));
  main.dataset.focus = 'keep';
  token.focus();
  return () => { delete main.dataset.focus; };
}
