// A run's graph on a canvas: every node of the environment shown, in the
// columns and places the server laid out (`/api/v1/runs/ID/graph`), each
// drawn in its status's shape and colour. Pan (drag, arrow keys), zoom
// (wheel, + and -), fit (0), find a node by name, collapse a level (click
// its column's header). 10,000 nodes draw in one frame: what is off screen
// is skipped, small nodes are batched by status, and a frame in which only
// statuses changed redraws just those nodes.

import { STATUSES, drawShape } from './status.js';

const NODE_W = 170;
const NODE_H = 24;
const ROW = 32;
const GAP = 70;
const FOLDED_W = 28;
const HEADER = 26;
const MARGIN = 30;
const MIN_ZOOM = 0.01;
const MAX_ZOOM = 3;

export class Dag {
  /**
   * `layout`: the server's; `opts.onOpen(i)` when a node is opened (click,
   * Enter), `opts.onHover(i, x, y)` when the pointer is over one (i = -1: none).
   */
  constructor(canvas, layout, opts = {}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', { alpha: false });
    this.layout = layout;
    this.opts = opts;
    const n = layout.names.length;
    this.n = n;
    this.codes = new Uint8Array(n);
    this.shown = new Uint8Array(n).fill(1);
    this.folded = new Set();
    this.found = -1;
    this.index = new Map(layout.names.map((name, i) => [name, i]));
    // Nodes of each column, top to bottom, for hit testing.
    this.columns = Array.from({ length: layout.level_count }, () => []);
    for (let i = 0; i < n; i++) this.columns[layout.levels[i]].push(i);
    for (const c of this.columns) c.sort((a, b) => layout.places[a] - layout.places[b]);
    this.height = HEADER + MARGIN + (n ? Math.max(...layout.places) : 0) * ROW + NODE_H + MARGIN;
    this.placeColumns();
    this.k = 1;
    this.tx = MARGIN;
    this.ty = 0;
    this.full = true;
    this.changed = new Set();
    this.frame = 0;
    this.waiters = [];
    this.pendingSince = 0;
    this.maxLagMs = 0;
    this.onDrawn = null;
    this.attach();
    this.resize();
  }

  placeColumns() {
    this.colX = [];
    let x = 0;
    for (let l = 0; l < this.layout.level_count; l++) {
      this.colX.push(x);
      x += (this.folded.has(l) ? FOLDED_W : NODE_W) + GAP;
    }
    this.width = x;
  }

  /** The node's box in world coordinates: [x, y, w, h]. */
  box(i) {
    const l = this.layout.levels[i];
    const w = this.folded.has(l) ? FOLDED_W : NODE_W;
    return [this.colX[l], HEADER + MARGIN + this.layout.places[i] * ROW, w, NODE_H];
  }

  /** Sets every node's status code (an index into STATUSES) and which are in the run. */
  setAll(codes, shown) {
    this.codes.set(codes);
    if (shown) this.shown.set(shown);
    this.redraw();
  }

  /** Sets node `i`'s status code; `arrived` is when the news came (performance.now()). */
  set(i, code, arrived) {
    if (this.codes[i] === code) return;
    this.codes[i] = code;
    this.changed.add(i);
    if (!this.pendingSince && arrived) this.pendingSince = arrived;
    this.schedule();
  }

  redraw() {
    this.full = true;
    this.schedule();
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  /** Resolves after the next drawing. */
  drawn() {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.schedule();
    });
  }

  resize() {
    const r = this.canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    this.cssW = Math.max(100, r.width);
    this.cssH = Math.max(100, r.height);
    this.canvas.width = Math.round(this.cssW * dpr);
    this.canvas.height = Math.round(this.cssH * dpr);
    this.dpr = dpr;
    this.redraw();
  }

  /** The whole graph in view (at most at 100 %). */
  fit() {
    const k = Math.min(1, (this.cssW - 2 * MARGIN) / Math.max(1, this.width), (this.cssH - HEADER) / Math.max(1, this.height));
    this.k = Math.max(MIN_ZOOM, k);
    this.tx = MARGIN;
    this.ty = HEADER * (1 - this.k);
    this.redraw();
  }

  panBy(dx, dy) {
    this.tx += dx;
    this.ty += dy;
    this.redraw();
    return this.drawn();
  }

  zoomAt(factor, sx, sy) {
    const k = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.k * factor));
    this.tx = sx - ((sx - this.tx) * k) / this.k;
    this.ty = sy - ((sy - this.ty) * k) / this.k;
    this.k = k;
    this.redraw();
  }

  /** Centres node `i` at a legible zoom and marks it. */
  centre(i) {
    this.found = i;
    if (this.folded.has(this.layout.levels[i])) {
      this.folded.delete(this.layout.levels[i]);
      this.placeColumns();
    }
    this.k = Math.max(this.k, 0.8);
    const [x, y, w, h] = this.box(i);
    this.tx = this.cssW / 2 - (x + w / 2) * this.k;
    this.ty = this.cssH / 2 - (y + h / 2) * this.k;
    this.redraw();
  }

  /** Folds or unfolds level `l` (a folded level is one bar of its statuses). */
  toggleLevel(l) {
    if (this.folded.has(l)) this.folded.delete(l);
    else this.folded.add(l);
    this.placeColumns();
    this.redraw();
    return this.folded.has(l);
  }

  /** The level whose column (its nodes, or its folded bar) is at screen x, or -1. */
  columnAt(sx) {
    const wx = (sx - this.tx) / this.k;
    let lo = 0, hi = this.colX.length - 1, l = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.colX[mid] <= wx) { l = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return l >= 0 && wx <= this.colX[l] + (this.folded.has(l) ? FOLDED_W : NODE_W) ? l : -1;
  }

  /** The node under the screen point, or -1 (a folded level has no nodes to hit). */
  hit(sx, sy) {
    const l = this.columnAt(sx);
    if (l < 0 || this.folded.has(l)) return -1;
    const col = this.columns[l];
    const place = ((sy - this.ty) / this.k - HEADER - MARGIN) / ROW;
    let lo = 0, hi = col.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const p = this.layout.places[col[mid]];
      if (place < p) hi = mid - 1;
      else if (place > p + NODE_H / ROW) lo = mid + 1;
      else return this.shown[col[mid]] ? col[mid] : -1;
    }
    return -1;
  }

  /** The level whose header is at screen x, if the point is on the header band. */
  headerAt(sx, sy) {
    if (sy > HEADER) return -1;
    const wx = (sx - this.tx) / this.k;
    for (let l = 0; l < this.colX.length; l++) {
      const w = this.folded.has(l) ? FOLDED_W : NODE_W;
      if (wx >= this.colX[l] && wx <= this.colX[l] + w + GAP / 2) return l;
    }
    return -1;
  }

  attach() {
    const c = this.canvas;
    let drag = null;
    c.addEventListener('pointerdown', (e) => {
      drag = { x: e.clientX, y: e.clientY, moved: false };
      c.setPointerCapture(e.pointerId);
    });
    c.addEventListener('pointermove', (e) => {
      const r = c.getBoundingClientRect();
      if (drag) {
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        if (drag.moved || Math.abs(dx) + Math.abs(dy) > 3) {
          drag.moved = true;
          drag.x = e.clientX;
          drag.y = e.clientY;
          this.tx += dx;
          this.ty += dy;
          this.redraw();
        }
        return;
      }
      const i = this.hit(e.clientX - r.left, e.clientY - r.top);
      const bar = this.columnAt(e.clientX - r.left);
      const foldable = this.headerAt(e.clientX - r.left, e.clientY - r.top) >= 0 || (bar >= 0 && this.folded.has(bar));
      c.style.cursor = i >= 0 || foldable ? 'pointer' : 'grab';
      if (this.opts.onHover) this.opts.onHover(i, e.clientX - r.left, e.clientY - r.top);
    });
    c.addEventListener('pointerleave', () => this.opts.onHover && this.opts.onHover(-1, 0, 0));
    c.addEventListener('pointerup', (e) => {
      const r = c.getBoundingClientRect();
      const was = drag;
      drag = null;
      if (!was || was.moved) return;
      const sx = e.clientX - r.left, sy = e.clientY - r.top;
      // A level's header, or its folded bar: fold or unfold it.
      const bar = this.columnAt(sx);
      const l = this.headerAt(sx, sy) >= 0 ? this.headerAt(sx, sy) : (bar >= 0 && this.folded.has(bar) ? bar : -1);
      if (l >= 0) {
        this.toggleLevel(l);
        if (this.opts.onFold) this.opts.onFold(l, this.folded.has(l));
        return;
      }
      const i = this.hit(sx, sy);
      if (i >= 0 && this.opts.onOpen) this.opts.onOpen(i);
    });
    c.addEventListener('wheel', (e) => {
      e.preventDefault();
      const r = c.getBoundingClientRect();
      this.zoomAt(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
    }, { passive: false });
    c.addEventListener('keydown', (e) => {
      const step = 60;
      const keys = {
        ArrowLeft: () => this.panBy(step, 0), ArrowRight: () => this.panBy(-step, 0),
        ArrowUp: () => this.panBy(0, step), ArrowDown: () => this.panBy(0, -step),
        '+': () => this.zoomAt(1.25, this.cssW / 2, this.cssH / 2), '=': () => this.zoomAt(1.25, this.cssW / 2, this.cssH / 2),
        '-': () => this.zoomAt(0.8, this.cssW / 2, this.cssH / 2), '0': () => this.fit(),
        Enter: () => this.found >= 0 && this.opts.onOpen && this.opts.onOpen(this.found),
      };
      if (keys[e.key]) {
        e.preventDefault();
        keys[e.key]();
      }
    });
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(c);
  }

  destroy() {
    this.observer.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
  }

  draw() {
    this.frame = 0;
    const ctx = this.ctx;
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    if (this.full) this.drawAll(ctx);
    else this.drawChanged(ctx);
    this.full = false;
    this.changed.clear();
    const now = performance.now();
    if (this.pendingSince) {
      this.maxLagMs = Math.max(this.maxLagMs, now - this.pendingSince);
      this.pendingSince = 0;
    }
    if (this.onDrawn) this.onDrawn(now);
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  view() {
    return [(-this.tx) / this.k, (HEADER - this.ty) / this.k, (this.cssW - this.tx) / this.k, (this.cssH - this.ty) / this.k];
  }

  drawAll(ctx) {
    const { layout } = this;
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(0, 0, this.cssW, this.cssH);
    const [x0, y0, x1, y1] = this.enter(ctx);
    // Edges: from the right of what is needed to the left of what needs it.
    const e = layout.edges;
    if (e.length) {
      ctx.strokeStyle = '#8c959f';
      ctx.globalAlpha = this.k < 0.15 ? 0.25 : 0.7;
      ctx.lineWidth = 1 / this.k;
      ctx.beginPath();
      const curved = this.k > 0.3;
      const top = HEADER + MARGIN + NODE_H / 2;
      for (let j = 0; j < e.length; j += 2) {
        const a = e[j], b = e[j + 1];
        if (!this.shown[a] || !this.shown[b]) continue;
        const la = layout.levels[a];
        const sx = this.colX[la] + (this.folded.has(la) ? FOLDED_W : NODE_W), sy = top + layout.places[a] * ROW;
        const tx = this.colX[layout.levels[b]], ty = top + layout.places[b] * ROW;
        if ((sx < x0 && tx < x0) || (sx > x1 && tx > x1) || (sy < y0 && ty < y0) || (sy > y1 && ty > y1)) continue;
        ctx.moveTo(sx, sy);
        if (curved) {
          const mx = (sx + tx) / 2;
          ctx.bezierCurveTo(mx, sy, mx, ty, tx, ty);
        } else ctx.lineTo(tx, ty);
      }
      ctx.stroke();
      ctx.globalAlpha = 1;
    }
    // Folded levels: one bar each, split by status.
    for (const l of this.folded) this.drawFolded(ctx, l);
    const small = this.k * NODE_H < 10;
    if (small) {
      // Too small to tell shapes apart: one path per status, made in one pass.
      const paths = STATUSES.map(() => new Path2D());
      const folds = this.folded.size > 0;
      const top = HEADER + MARGIN;
      for (let i = 0; i < this.n; i++) {
        const l = layout.levels[i];
        if (!this.shown[i] || (folds && this.folded.has(l))) continue;
        const x = this.colX[l];
        const y = top + layout.places[i] * ROW;
        if (x > x1 || x + NODE_W < x0 || y > y1 || y + NODE_H < y0) continue;
        paths[this.codes[i]].rect(x, y, NODE_W, NODE_H);
      }
      for (let s = 0; s < STATUSES.length; s++) {
        ctx.fillStyle = STATUSES[s].color;
        ctx.fill(paths[s]);
      }
    } else {
      ctx.font = '12px system-ui, sans-serif';
      ctx.textBaseline = 'middle';
      for (let i = 0; i < this.n; i++) {
        if (!this.shown[i] || this.folded.has(layout.levels[i])) continue;
        const [x, y, w, h] = this.box(i);
        if (x > x1 || x + w < x0 || y > y1 || y + h < y0) continue;
        this.drawNode(ctx, i, x, y);
      }
    }
    if (this.found >= 0 && this.shown[this.found]) {
      const [x, y, w, h] = this.box(this.found);
      ctx.strokeStyle = '#0550ae';
      ctx.lineWidth = 3 / this.k;
      ctx.strokeRect(x - 4 / this.k, y - 4 / this.k, w + 8 / this.k, h + 8 / this.k);
    }
    ctx.restore();
    this.drawHeader(ctx);
  }

  drawNode(ctx, i, x, y) {
    const s = STATUSES[this.codes[i]];
    ctx.fillStyle = '#ffffff';
    ctx.fillRect(x, y, NODE_W, NODE_H);
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 1.5;
    ctx.strokeRect(x + 0.75, y + 0.75, NODE_W - 1.5, NODE_H - 1.5);
    drawShape(ctx, this.codes[i], x + 12, y + NODE_H / 2, 6.5);
    if (this.k * 12 >= 7) {
      ctx.fillStyle = '#1f2328';
      const name = this.layout.names[i];
      // About 6.5 px a character at 12 px: a long name is cut with an ellipsis.
      const fits = Math.floor((NODE_W - 30) / 6.5);
      ctx.fillText(name.length > fits ? name.slice(0, fits - 1) + '…' : name, x + 24, y + NODE_H / 2 + 0.5);
    }
  }

  drawFolded(ctx, l) {
    const col = this.columns[l].filter((i) => this.shown[i]);
    if (!col.length) return;
    const x = this.colX[l];
    const top = this.box(col[0])[1];
    const bottom = this.box(col[col.length - 1])[1] + NODE_H;
    const counts = new Array(STATUSES.length).fill(0);
    for (const i of col) counts[this.codes[i]]++;
    let y = top;
    for (let s = 0; s < STATUSES.length; s++) {
      if (!counts[s]) continue;
      const h = ((bottom - top) * counts[s]) / col.length;
      ctx.fillStyle = STATUSES[s].color;
      ctx.fillRect(x, y, FOLDED_W, h);
      y += h;
    }
  }

  /** Draws from here on in world coordinates, below the header band; the world's part in view. */
  enter(ctx) {
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, HEADER, this.cssW, this.cssH - HEADER);
    ctx.clip();
    ctx.translate(this.tx, this.ty);
    ctx.scale(this.k, this.k);
    return this.view();
  }

  drawChanged(ctx) {
    const [x0, y0, x1, y1] = this.enter(ctx);
    const small = this.k * NODE_H < 10;
    ctx.font = '12px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    const folds = new Set();
    for (const i of this.changed) {
      if (!this.shown[i]) continue;
      const l = this.layout.levels[i];
      if (this.folded.has(l)) {
        folds.add(l);
        continue;
      }
      const [x, y, w, h] = this.box(i);
      if (x > x1 || x + w < x0 || y > y1 || y + h < y0) continue;
      if (small) {
        ctx.fillStyle = STATUSES[this.codes[i]].color;
        ctx.fillRect(x, y, w, h);
      } else this.drawNode(ctx, i, x, y);
    }
    for (const l of folds) this.drawFolded(ctx, l);
    ctx.restore();
  }

  drawHeader(ctx) {
    ctx.fillStyle = '#f6f8fa';
    ctx.fillRect(0, 0, this.cssW, HEADER);
    ctx.fillStyle = '#d0d7de';
    ctx.fillRect(0, HEADER - 1, this.cssW, 1);
    ctx.fillStyle = '#1f2328';
    ctx.font = '12px system-ui, sans-serif';
    ctx.textBaseline = 'middle';
    for (let l = 0; l < this.colX.length; l++) {
      const w = this.folded.has(l) ? FOLDED_W : NODE_W;
      const sx = this.tx + this.colX[l] * this.k;
      const sw = w * this.k;
      if (sx + sw < 0 || sx > this.cssW) continue;
      const text = this.folded.has(l) ? `▸${l}` : (sw > 70 ? `▾ level ${l}` : `${l}`);
      if (sw > 12 || l % Math.ceil(14 / Math.max(sw, 1)) === 0) ctx.fillText(text, sx + 2, HEADER / 2);
    }
  }
}
