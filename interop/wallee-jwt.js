'use strict';
// postfinancecheckout 5.5.0 (npm alias pfc5), unmodified: Authorization:
// Bearer <HS256 JWT keyed with the base64-decoded secret> on
// TransactionsService.getPaymentTransactionsId, which sends
// GET <basePath>/payment/transactions/{id}?expand=… and signs /api/v2.0/….
const { Configuration, HttpBearerAuth, TransactionsService, ResponseError } = require('pfc5');
const { config, fail } = require('./config');

const c = config();
const service = new TransactionsService(new Configuration({
  basePath: c.url + '/api/v2.0',
  httpBearerAuth: new HttpBearerAuth(Number(c.userId), c.secret),
}));

service.getPaymentTransactionsId({ id: 17, space: 405, expand: new Set(['group', 'lineItems']) }).then(
  (tx) => console.log(JSON.stringify(tx)),
  async (err) => {
    if (err instanceof ResponseError) {
      fail(err.response.status, await err.response.text());
    }
    fail('error', String(err));
  },
);
