'use strict';
// http-message-signatures, unmodified: RFC 9421 hmac-sha256 keyed with the
// secret string as issued, keyid = user id, covering @method, @authority,
// @path, @query and an RFC 9530 content-digest of a POST body.
const crypto = require('node:crypto');
const { httpbis: { signMessage }, createSigner } = require('http-message-signatures');
const { config, fail } = require('./config');

async function main() {
  const c = config();
  const url = c.url + '/api/v2.0/payment/transactions?space=405';
  const body = JSON.stringify({ currency: 'CHF', lineItems: [{ name: 'Grüezi', amount: 42 }] });
  const digest = crypto.createHash('sha256').update(body).digest('base64');
  const signed = await signMessage({
    key: createSigner(c.secret, 'hmac-sha256', c.userId),
    fields: ['@method', '@authority', '@path', '@query', 'content-digest', 'content-type'],
    params: ['keyid', 'alg', 'created', 'expires'],
  }, {
    method: 'POST',
    url: url,
    headers: {
      'content-type': 'application/json',
      'content-digest': `sha-256=:${digest}:`,
    },
    body: body,
  });
  const res = await fetch(url, { method: 'POST', headers: signed.headers, body: body });
  const text = await res.text();
  if (res.status !== 200) {
    fail(res.status, text);
  }
  console.log(text);
}

main().catch((err) => fail('error', String(err)));
