// Requests to the server's API (`/api/v1`, described at
// /api/v1/openapi.json). The session is the HttpOnly cookie the login
// set; every change carries the session's CSRF token.

let csrf = '';

export function setCsrf(token) {
  csrf = token || '';
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Called when the server says the session has ended. */
let onSignedOut = () => {};
export function whenSignedOut(f) {
  onSignedOut = f;
}

/** `method` of `path` (under /api/v1) with a JSON `body`: the answer's JSON and headers. */
export async function request(path, { method = 'GET', body } = {}) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = csrf;
  let r;
  try {
    r = await fetch('/api/v1' + path, {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, `the server cannot be reached (${e.message})`);
  }
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!r.ok) {
    if (r.status === 401 && path !== '/session') onSignedOut();
    throw new ApiError(r.status, (data && data.error) || `${r.status} ${r.statusText}`);
  }
  return { data, headers: r.headers };
}

export async function get(path) {
  return (await request(path)).data;
}

export async function post(path, body) {
  return (await request(path, { method: 'POST', body: body === undefined ? {} : body })).data;
}

/** A path segment, encoded. */
export const seg = encodeURIComponent;
