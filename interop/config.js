'use strict';
// Shared settings of the interop scripts: keygate's base URL (no /api),
// the application user's id and one of its signing secrets (base64, as
// issued). Taken from the arguments or from KEYGATE_URL, KEYGATE_USER_ID
// and KEYGATE_SECRET. The secret is never printed.
function config() {
  const [url, userId, secret] = process.argv.slice(2);
  const c = {
    url: (url || process.env.KEYGATE_URL || '').replace(/\/+$/, ''),
    userId: userId || process.env.KEYGATE_USER_ID || '',
    secret: secret || process.env.KEYGATE_SECRET || '',
  };
  if (!c.url || !/^\d+$/.test(c.userId) || !c.secret) {
    console.error('usage: node <script> <base-url> <numeric-user-id> <base64-secret> (or KEYGATE_URL, KEYGATE_USER_ID, KEYGATE_SECRET)');
    process.exit(2);
  }
  return c;
}

// fail prints what the SDK reported (status and body, no credentials) and exits 1.
function fail(status, body) {
  console.error(JSON.stringify({ error: true, status: status, body: body }));
  process.exit(1);
}

module.exports = { config, fail };
