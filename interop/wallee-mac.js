'use strict';
// postfinancecheckout 4.7.0, unmodified: x-mac-* headers (HMAC-SHA512 with
// the base64-decoded secret) on TransactionService.read(spaceId, id), which
// sends GET <basePath>/transaction/read?spaceId=…&id=… and signs /api/…,
// then TransactionService.readWithCredentials with a string whose query
// encoding differs between what the SDK signs (encodeURIComponent) and what
// axios sends ('+' for space, ": $ , [ ]" raw). One JSON line per answer.
const { PostFinanceCheckout } = require('postfinancecheckout');
const { config, fail } = require('./config');

const c = config();
const service = new PostFinanceCheckout.api.TransactionService({
  space_id: 405,
  user_id: Number(c.userId),
  api_secret: c.secret,
});
service.basePath = c.url + '/api';

async function main() {
  for (const call of [
    () => service.read(405, 17),
    () => service.readWithCredentials("405-17:a b+c,$[x]~*'()!ü"),
  ]) {
    const res = await call();
    console.log(JSON.stringify(res.body));
  }
}

main().catch((err) => fail(err.response ? err.response.statusCode : String(err.statusCode || err), err.body));
