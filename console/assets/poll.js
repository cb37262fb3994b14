// Polling what has no event stream (a service's pipelines): one request
// at a time, again soon while something is in progress, and never after
// the page is left.

/**
 * Calls `step` again and again: after `activeMs` when it answered true (in
 * progress), after `idleMs` when false (not at all when `idleMs` is null);
 * `active` is what the page's first call of it answered. `now()` asks at
 * once (after an action); `stop()` ends it.
 */
export function poll(step, { activeMs, idleMs }, active) {
  let timer = null;
  let busy = false;
  let again = false;
  let stopped = false;
  async function tick() {
    clearTimeout(timer);
    timer = null;
    if (stopped) return;
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    let active = true;
    try {
      active = await step();
    } catch { /* tried again on the next tick */ }
    busy = false;
    if (stopped) return;
    if (again) {
      again = false;
      tick();
      return;
    }
    later(active);
  }
  function later(active) {
    const wait = active ? activeMs : idleMs;
    if (wait !== null) timer = setTimeout(tick, wait);
  }
  later(active);
  return {
    now: tick,
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
