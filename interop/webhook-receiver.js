// A keygate webhook receiver: verifies every delivery with the standardwebhooks npm package.
const http = require('node:http');
const { Webhook } = require('standardwebhooks');

const wh = new Webhook(process.env.WEBHOOK_SECRET); // the whsec_… secret keygate showed once
const seen = new Set(); // keep these in your database: a retry or replay repeats the webhook-id

const server = http.createServer((req, res) => {
  const body = [];
  req.on('data', (chunk) => body.push(chunk));
  req.on('end', () => {
    const id = req.headers['webhook-id'];
    let event;
    try {
      // The raw body as received; webhook-id, webhook-timestamp and webhook-signature.
      event = wh.verify(Buffer.concat(body), req.headers);
    } catch (err) {
      console.log(JSON.stringify({ id, refused: err.message }));
      res.writeHead(401).end();
      return;
    }
    if (seen.has(id)) {
      console.log(JSON.stringify({ id, duplicate: true })); // handled before: answer 2xx, do nothing
    } else {
      seen.add(id);
      console.log(JSON.stringify({ id, type: event.type, subject: event.subject })); // handle the event here
    }
    res.writeHead(204).end();
  });
});
server.listen(Number(process.env.PORT || 8080), '127.0.0.1', () => {
  console.log(JSON.stringify({ listening: server.address().port })); // PORT=0: any free port
});
