// The console's only way to the server: the admin API at /v1, with the
// administrator's credential from sessionStorage (never a cookie).

const STORE = 'keygate.console.credential';

/** The signed-in credential, kept for this browser tab only. */
export const session = {
  get() { return sessionStorage.getItem(STORE) || ''; },
  set(v) { sessionStorage.setItem(STORE, v); },
  clear() { sessionStorage.removeItem(STORE); },
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
    if (res.status === 401 && !opts.credential) unauthorizedListeners.forEach((fn) => fn(err));
    throw err;
  }
  return { data: json ? json.data : null, envelope: json, etag: res.headers.get('ETag') };
}

/** enc encodes one path segment. */
export const enc = encodeURIComponent;
