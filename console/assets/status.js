// The statuses a node is shown in, each told apart by its shape and glyph
// as well as its colour (colours meet WCAG AA against the page). The
// server's node statuses are queued, running, waiting, succeeded, failed,
// skipped and cancelled; the console tells three kinds of "not started"
// apart: pending (its environment has not started), blocked (it waits for
// what it depends on) and queued (ready, waiting for a free slot).

export const STATUSES = [
  { key: 'pending', label: 'pending', glyph: '○', color: '#57606a', shape: 'ring' },
  { key: 'blocked', label: 'blocked', glyph: '◇', color: '#6639ba', shape: 'diamond' },
  { key: 'queued', label: 'queued', glyph: '□', color: '#0a6b73', shape: 'square' },
  { key: 'running', label: 'running', glyph: '◉', color: '#0550ae', shape: 'target' },
  { key: 'waiting', label: 'waiting for approval', glyph: '‖', color: '#8a4600', shape: 'hexagon' },
  { key: 'succeeded', label: 'succeeded', glyph: '✓', color: '#116329', shape: 'check' },
  { key: 'failed', label: 'failed', glyph: '✕', color: '#b3261e', shape: 'cross' },
  { key: 'cancelled', label: 'cancelled', glyph: '⊘', color: '#32383f', shape: 'slash' },
  { key: 'skipped', label: 'skipped', glyph: '»', color: '#735c0f', shape: 'triangle' },
];

export const BY_KEY = Object.fromEntries(STATUSES.map((s, i) => [s.key, { ...s, code: i }]));
export const CODE = Object.fromEntries(STATUSES.map((s, i) => [s.key, i]));
export const FINAL = new Set(['succeeded', 'failed', 'cancelled', 'skipped']);

/** A status's badge: glyph and words, its colour from the stylesheet. */
export function badgeClass(key) {
  return `badge st-${BY_KEY[key] ? key : 'pending'}`;
}

/** Draws status `code`'s shape, `r` its half-size, centred at (x, y). */
export function drawShape(ctx, code, x, y, r) {
  const s = STATUSES[code] || STATUSES[0];
  ctx.fillStyle = s.color;
  ctx.strokeStyle = s.color;
  ctx.lineWidth = Math.max(1, r / 3);
  switch (s.shape) {
    case 'ring':
      ctx.beginPath();
      ctx.arc(x, y, r * 0.8, 0, Math.PI * 2);
      ctx.stroke();
      break;
    case 'diamond':
      ctx.beginPath();
      ctx.moveTo(x, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y); ctx.closePath();
      ctx.stroke();
      break;
    case 'square':
      ctx.strokeRect(x - r * 0.75, y - r * 0.75, r * 1.5, r * 1.5);
      break;
    case 'target':
      ctx.beginPath();
      ctx.arc(x, y, r * 0.85, 0, Math.PI * 2);
      ctx.stroke();
      ctx.beginPath();
      ctx.arc(x, y, r * 0.4, 0, Math.PI * 2);
      ctx.fill();
      break;
    case 'hexagon': {
      ctx.beginPath();
      for (let k = 0; k < 6; k++) {
        const a = Math.PI / 3 * k + Math.PI / 6;
        ctx[k ? 'lineTo' : 'moveTo'](x + r * Math.cos(a), y + r * Math.sin(a));
      }
      ctx.closePath();
      ctx.fill();
      if (r >= 5) {
        ctx.fillStyle = '#fff';
        ctx.fillRect(x - r * 0.4, y - r * 0.45, r * 0.25, r * 0.9);
        ctx.fillRect(x + r * 0.15, y - r * 0.45, r * 0.25, r * 0.9);
      }
      break;
    }
    case 'check':
      ctx.beginPath();
      ctx.arc(x, y, r, 0, Math.PI * 2);
      ctx.fill();
      if (r >= 4) {
        ctx.strokeStyle = '#fff';
        ctx.lineWidth = Math.max(1.5, r / 3.5);
        ctx.beginPath();
        ctx.moveTo(x - r * 0.45, y); ctx.lineTo(x - r * 0.1, y + r * 0.4); ctx.lineTo(x + r * 0.5, y - r * 0.4);
        ctx.stroke();
      }
      break;
    case 'cross':
      ctx.fillRect(x - r, y - r, r * 2, r * 2);
      if (r >= 4) {
        ctx.strokeStyle = '#fff';
        ctx.lineWidth = Math.max(1.5, r / 3.5);
        ctx.beginPath();
        ctx.moveTo(x - r * 0.5, y - r * 0.5); ctx.lineTo(x + r * 0.5, y + r * 0.5);
        ctx.moveTo(x + r * 0.5, y - r * 0.5); ctx.lineTo(x - r * 0.5, y + r * 0.5);
        ctx.stroke();
      }
      break;
    case 'slash':
      ctx.beginPath();
      ctx.arc(x, y, r * 0.85, 0, Math.PI * 2);
      ctx.moveTo(x - r * 0.6, y + r * 0.6); ctx.lineTo(x + r * 0.6, y - r * 0.6);
      ctx.stroke();
      break;
    case 'triangle':
      ctx.beginPath();
      ctx.moveTo(x - r * 0.7, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x - r * 0.7, y + r); ctx.closePath();
      ctx.fill();
      break;
  }
}
