// A gate's decision, as the run page and a service pipeline's page both
// ask for it: a dialog for the comment, then the run's approve or reject.

import { post, seg } from '../api.js';
import { h, dialog, announce } from '../dom.js';

/** Asks for a comment, then approves or rejects gate `g` ({environment, node?}) of run `run`; whether it was decided. */
export async function decide(run, g, what) {
  const comment = h('textarea', { id: 'decide-comment', rows: 3, maxlength: 4096 });
  const where = g.node ? `${g.environment} / ${g.node}` : `environment ${g.environment}`;
  const answer = await dialog(`${what === 'approve' ? 'Approve' : 'Reject'} ${where}`,
    h('div', { class: 'form' }, h('label', { for: 'decide-comment' }, 'Comment'), comment),
    [{ label: what === 'approve' ? 'Approve' : 'Reject', value: 'yes', class: what === 'approve' ? 'primary' : 'danger', id: 'decide-confirm' },
      { label: 'Close', value: 'no' }]);
  if (answer !== 'yes') return false;
  try {
    const body = { environment: g.environment };
    if (g.node) body.node = g.node;
    if (comment.value.trim()) body.comment = comment.value.trim();
    await post(`/runs/${seg(run)}/${what}`, body);
    announce(`${what === 'approve' ? 'Approved' : 'Rejected'} ${where}`);
    return true;
  } catch (e) {
    await dialog('Not decided', h('p', { class: 'error' }, e.message), [{ label: 'OK', value: 'ok' }]);
    return false;
  }
}
