// The console's only way to the server: the admin API at /v1, with the
// console session token from sessionStorage (never a cookie). Signing in
// exchanges the pasted key or access token for that short-lived token
// (POST /v1/console/session); the key itself is not kept.

const STORE = 'keygate.console.credential';
const IDENTITY = 'keygate.console.identity';

/** The signed-in session, kept for this browser tab only. */
export const session = {
  get() { return sessionStorage.getItem(STORE) || ''; },
  set(v) { sessionStorage.setItem(STORE, v); },
  clear() {
    sessionStorage.removeItem(STORE);
    sessionStorage.removeItem(IDENTITY);
  },
  /** identity is who the session acts as (GET /v1/console/session). */
  identity() {
    try { return JSON.parse(sessionStorage.getItem(IDENTITY) || 'null'); } catch { return null; }
  },
  setIdentity(v) { sessionStorage.setItem(IDENTITY, JSON.stringify(v)); },
};

/**
 * signIn exchanges a key or access token for a console session and keeps
 * the session's token and identity; it rejects with the API's problem
 * (401 not accepted, 403 a user that may not use the console).
 */
export async function signIn(credential) {
  const { data } = await api('POST', '/v1/console/session', { credential });
  const { token, ...identity } = data;
  session.set(token);
  session.setIdentity(identity);
  return identity;
}

/** signOut ends the session on the server and forgets it here. */
export async function signOut() {
  if (session.get()) {
    try { await api('DELETE', '/v1/console/session', { quiet: true }); } catch { /* expired already */ }
  }
  session.clear();
}

/** can tells what the signed-in identity may do with a user record. */
export const can = {
  /** administer: the overview, tenants, the activity log, creating users. */
  administer() {
    const id = session.identity();
    return !!id && (id.admin || id.user.superadmin);
  },
  /** manage: change user u (its record, keys, secrets, roles). */
  manage(u) {
    const id = session.identity();
    if (!id) return false;
    return id.user.superadmin || (id.admin && u.primaryTenant === id.tenant);
  },
  /** self: u is the signed-in user. */
  self(u) {
    const id = session.identity();
    return !!id && !!u && id.user.id === u.id;
  },
};

/** ApiError is a failed call: the HTTP status and the problem+json body. */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || { title: `HTTP ${status}`, status };
  }
}

/** Listeners told when the credential stops working (401). */
const unauthorizedListeners = [];
export function onUnauthorized(fn) { unauthorizedListeners.push(fn); }

/**
 * api calls the admin API. opts: query (object), body (JSON), ifMatch
 * (version number or '*'), credential (to try one before storing it).
 * It resolves to { data, envelope, etag } and rejects with ApiError.
 */
export async function api(method, path, opts = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(opts.query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, String(v));
  }
  const headers = { Accept: 'application/json' };
  const cred = opts.credential ?? session.get();
  if (cred) headers.Authorization = `Bearer ${cred}`;
  if (opts.ifMatch !== undefined) headers['If-Match'] = opts.ifMatch === '*' ? '*' : `"${opts.ifMatch}"`;
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body, credentials: 'omit', cache: 'no-store', redirect: 'error' });
  } catch (e) {
    throw new ApiError(0, { title: 'keygate cannot be reached', detail: String(e.message || e) });
  }
  if (res.status === 204) return { data: null, envelope: null, etag: res.headers.get('ETag') };
  let json = null;
  try { json = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const err = new ApiError(res.status, json);
    if (res.status === 401 && !opts.credential && !opts.quiet) unauthorizedListeners.forEach((fn) => fn(err));
    throw err;
  }
  return { data: json ? json.data : null, envelope: json, etag: res.headers.get('ETag') };
}

/** enc encodes one path segment. */
export const enc = encodeURIComponent;
