// The gateway overview of a tenant (the landing page of administrators):
// GET /v1/tenants/{id}/overview, drawn with uPlot (vendor/, MIT; loaded by
// index.html as the global uPlot, no CDN).
import { api, enc, session } from './api.js';
import { h, field, table, timeEl, fmtTime, pager, formData } from './ui.js';

/* global uPlot */

const REASONS = [
  ['badKey', 'Bad key', 'no valid credential: missing, malformed, unknown, wrong secret or signature, replayed'],
  ['expired', 'Expired', 'the key or token had expired'],
  ['revoked', 'Revoked', 'revoked, disabled or past its grace period; user, tenant or type no longer allowed'],
  ['coverage', 'Coverage', 'a signature that does not bind the request'],
  ['forbidden', 'Forbidden', 'no ACTIVE permission in the tenant, or the route\'s role or entity missing (403)'],
];

// Stacked from the bottom: what the chart draws and its legend shows.
const LAYERS = [
  ['allowed', 'Allowed', '#2f7d4f', (b) => b.allowed],
  ['limited', 'Rate-limited (429)', '#c27c0e', (b) => b.limited],
  ['refused', 'Refused (401/403)', '#c0362c', (b) => b.refused],
  ['other', 'Throttled, invalid, unavailable', '#6e40c9', (b) => b.throttled + b.invalid + b.unavailable],
];

/** tenantOf is the tenant on show: ?tenant= or the session's. */
function tenantOf(q) {
  return q.get('tenant') || (session.identity() || {}).tenant;
}

function hourLabel(t) {
  return new Date(t).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** totals is one window's numbers; each value is tagged for tests and tools. */
function totals(win, name) {
  const dd = (metric, v, cls) => h('dd', { 'data-window': name, 'data-metric': metric, class: cls }, String(v));
  return h('dl', { class: 'ov-totals' },
    h('dt', {}, 'Allowed'), dd('allowed', win.allowed),
    h('dt', {}, 'Rate-limited (429)'), dd('limited', win.limited),
    h('dt', {}, 'Refused (401/403)'), dd('refused', win.refused),
    REASONS.map(([k, label, why]) => [h('dt', { class: 'sub-reason', title: why }, label), dd(`refusals.${k}`, win.refusals[k], 'sub-reason')]),
    h('dt', {}, 'Throttled (per client IP)'), dd('throttled', win.throttled),
    h('dt', {}, 'Invalid (400/413)'), dd('invalid', win.invalid),
    h('dt', {}, 'Unavailable (503)'), dd('unavailable', win.unavailable));
}

function windowCard(title, win, name) {
  return h('section', { class: 'card', 'aria-labelledby': `ov-${name}` },
    h('h2', { id: `ov-${name}` }, title),
    h('p', { class: 'hint' }, `${fmtTime(win.from)} to ${fmtTime(win.to)}`),
    h('p', { class: 'ov-big' }, h('span', { 'data-window': name, 'data-metric': 'requests' }, String(win.requests)), ' requests'),
    totals(win, name));
}

/** chart draws the hourly buckets as stacked bars with uPlot. */
function chart(hourly) {
  const box = h('div', { class: 'ov-chart', role: 'img', 'aria-label': `Requests per hour, ${fmtTime(hourly[0].start)} to ${fmtTime(hourly[hourly.length - 1].start)}, stacked: allowed, rate-limited, refused, other. The table below has the numbers.` });
  if (typeof uPlot !== 'function') {
    box.append(h('p', { class: 'empty' }, 'The chart library did not load; the table below has the numbers.'));
    return box;
  }
  const xs = hourly.map((b) => Date.parse(b.start) / 1000);
  // Cumulative sums, top layer first: uPlot draws later series over
  // earlier ones, so each layer covers the lower part of the one before.
  const sums = [];
  let acc = hourly.map(() => 0);
  for (const [, , , value] of LAYERS) {
    acc = acc.map((a, i) => a + value(hourly[i]));
    sums.push(acc);
  }
  const series = [{}];
  const data = [xs];
  for (let i = LAYERS.length - 1; i >= 0; i--) {
    const [, label, color] = LAYERS[i];
    series.push({ label, fill: color, stroke: color, width: 0, paths: uPlot.paths.bars({ size: [0.75, 60] }), points: { show: false } });
    data.push(sums[i]);
  }
  const u = new uPlot({
    width: 1080,
    height: 260,
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: { x: { time: true }, y: { range: (self, min, max) => [0, Math.max(5, max)] } },
    axes: [{ values: (self, ticks) => ticks.map((t) => hourLabel(t * 1000)) }, { size: 48 }],
    series,
  }, data);
  box.append(u.root);
  return box;
}

function legend() {
  return h('ul', { class: 'legend' }, LAYERS.map(([k, label]) => h('li', {}, h('span', { class: `swatch swatch-${k}`, 'aria-hidden': 'true' }), label)));
}

function userLink(u, tenant) {
  return u.name ? h('a', { href: `#/users/${enc(u.userId)}` }, u.name) : h('span', { class: 'mono' }, u.userId);
}

/** overviewScreen is the gateway overview of a tenant. */
export async function overviewScreen(q) {
  const tenant = tenantOf(q);
  const { data: ov } = await api('GET', `/v1/tenants/${enc(tenant)}/overview`, { query: { top: 5, keys: 10 } });
  const me = session.identity();
  const picker = me.user.superadmin ? h('form', {
    class: 'filters',
    onsubmit: (e) => {
      e.preventDefault();
      location.hash = `#/overview?tenant=${enc(formData(e.target).tenant)}`;
    },
  }, field('Tenant', h('input', { name: 'tenant', value: tenant, required: true, autocomplete: 'off' })), h('button', { type: 'submit', class: 'secondary' }, 'Show')) : null;
  const byRequests = table('Top users by requests', ['User', 'Type', 'Requests', 'Allowed', 'Rate-limited', 'Refused'],
    ov.topByRequests.items.map((u) => [userLink(u, tenant), u.type || '—', String(u.requests), String(u.allowed), String(u.limited), String(u.refused)]),
    'No requests of known users in the last 24 hours.');
  const byRefusals = table('Top users by refusals', ['User', 'Refused', ...REASONS.map(([, l]) => l)],
    ov.topByRefusals.items.map((u) => [userLink(u, tenant), String(u.refused), ...REASONS.map(([k]) => String(u.refusals[k]))]),
    'No user was refused in the last 24 hours.');
  const keys = table('Keys expiring in the next 14 days', ['Key', 'User', 'Masked', 'Expires', 'Last used'],
    ov.expiringKeys.items.map((k) => [k.name, h('a', { href: `#/users/${enc(k.userId)}/keys` }, k.userName || k.userId), h('span', { class: 'mono' }, k.masked), timeEl(k.expiresAt), timeEl(k.lastUsedAt)]),
    'No key expires in the next 14 days.');
  const hours = ov.hourly.filter((b) => b.requests > 0);
  return h('section', { class: 'overview' },
    h('div', { class: 'heading-row' }, h('h1', {}, `Gateway overview: ${ov.tenantName || ov.tenant}`),
      h('button', { type: 'button', class: 'small secondary', onclick: () => window.dispatchEvent(new HashChangeEvent('hashchange')) }, 'Refresh')),
    h('p', {}, `The requests on the gateway routes of tenant ${ov.tenant}, as counted by the gateways per hour (they add their counts every few seconds). As of ${fmtTime(ov.at)}.`),
    picker,
    h('div', { class: 'ov-windows' },
      windowCard(`Last hour (since ${hourLabel(ov.lastHour.from)})`, ov.lastHour, 'lastHour'),
      windowCard('Last 24 hours', ov.lastDay, 'lastDay')),
    h('div', { class: 'card' }, h('h2', {}, 'Requests per hour'), chart(ov.hourly), legend(),
      h('details', {}, h('summary', {}, `Table of the ${hours.length} hour${hours.length === 1 ? '' : 's'} with requests`),
        table('Requests per hour', ['Hour', 'Allowed', 'Rate-limited', 'Refused', 'Throttled', 'Invalid', 'Unavailable'],
          hours.map((b) => [fmtTime(b.start), String(b.allowed), String(b.limited), String(b.refused), String(b.throttled), String(b.invalid), String(b.unavailable)]), 'No requests.'))),
    h('div', { class: 'card' }, h('h2', {}, 'Top users by requests, last 24 hours'), byRequests,
      h('p', {}, h('a', { href: `#/overview/users?tenant=${enc(ov.tenant)}&by=requests` }, `All ${ov.topByRequests.total} users by requests`))),
    h('div', { class: 'card' }, h('h2', {}, 'Top users by refusals, last 24 hours'), byRefusals,
      h('p', {}, h('a', { href: `#/overview/users?tenant=${enc(ov.tenant)}&by=refusals` }, `All ${ov.topByRefusals.total} users by refusals`))),
    h('div', { class: 'card' }, h('h2', {}, 'Keys expiring in the next 14 days'),
      h('p', { 'data-metric': 'expiring' }, `${ov.expiringKeys.total} ACTIVE key${ov.expiringKeys.total === 1 ? '' : 's'} of tenant ${ov.tenant} expire${ov.expiringKeys.total === 1 ? 's' : ''} before ${fmtTime(ov.expiringKeys.before)}.`),
      keys));
}

/** topUsersScreen pages through a tenant's users by requests or refusals. */
export async function topUsersScreen(q) {
  const tenant = tenantOf(q);
  const by = q.get('by') === 'refusals' ? 'refusals' : 'requests';
  const page = Number(q.get('page') || 1);
  const size = 25;
  const { data, envelope } = await api('GET', `/v1/tenants/${enc(tenant)}/usage/users`, { query: { by, page, size } });
  const rows = data.map((u) => [userLink(u, tenant), u.type || '—', String(u.requests), String(u.allowed), String(u.limited), String(u.refused),
    ...REASONS.map(([k]) => String(u.refusals[k]))]);
  return h('section', {},
    h('p', { class: 'crumbs' }, h('a', { href: `#/overview?tenant=${enc(tenant)}` }, 'Overview'), ' / '),
    h('h1', {}, `Users of ${tenant} by ${by}, last 24 hours`),
    table(`Users by ${by}`, ['User', 'Type', 'Requests', 'Allowed', 'Rate-limited', 'Refused', ...REASONS.map(([, l]) => l)], rows, 'No users.'),
    pager(page, size, envelope.total, (p) => `#/overview/users?${new URLSearchParams({ tenant, by, page: p })}`));
}
