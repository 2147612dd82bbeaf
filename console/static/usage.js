// Usage of one user: requests per hour over the last 7 days as a stacked
// bar chart (hand-drawn SVG), split into allowed, rate-limited and refused.
import { api, enc } from './api.js';
import { h, s, table, fmtTime } from './ui.js';

const SERIES = [
  ['allowed', 'Allowed', 'bar-allowed'],
  ['limited', 'Rate-limited (429)', 'bar-limited'],
  ['refused', 'Refused (401/403)', 'bar-refused'],
];

/** retention turns a Go duration ("192h0m0s") into days or hours. */
function retention(d) {
  const hours = Number((String(d).match(/^(\d+)h/) || [])[1]);
  if (!hours) return d;
  return hours % 24 === 0 ? `${hours / 24} days` : `${hours} hours`;
}

function niceMax(n) {
  if (n <= 5) return 5;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

/** chart draws the buckets as stacked bars; returns an <svg>. */
export function chart(u) {
  const W = 860; const H = 260; const L = 48; const R = 8; const T = 12; const B = 34;
  const n = u.buckets.length;
  const max = niceMax(Math.max(0, ...u.buckets.map((b) => b.allowed + b.limited + b.refused)));
  const bw = (W - L - R) / n;
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const parts = [];
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    parts.push(s('line', { x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid' }),
      s('text', { x: L - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, Number.isInteger(v) ? String(v) : v.toFixed(1)));
  }
  u.buckets.forEach((b, i) => {
    let acc = 0;
    const x = L + i * bw;
    for (const [k, label, cls] of SERIES) {
      const v = b[k];
      if (!v) continue;
      const r = s('rect', { x: x + 0.5, width: Math.max(1, bw - 1), y: y(acc + v), height: y(acc) - y(acc + v), class: cls });
      r.append(s('title', {}, `${fmtTime(b.start)}: ${v} ${label.toLowerCase()}`));
      parts.push(r);
      acc += v;
    }
    const d = new Date(b.start);
    if (u.step === '1h0m0s' ? d.getUTCHours() === 0 : i % Math.ceil(n / 8) === 0) {
      parts.push(s('line', { x1: x, x2: x, y1: H - B, y2: H - B + 4, class: 'tick' }),
        s('text', { x: x + 2, y: H - B + 16, class: 'axis' }, d.toLocaleDateString(undefined, { month: 'short', day: 'numeric', timeZone: 'UTC' })));
    }
  });
  parts.push(s('line', { x1: L, x2: W - R, y1: H - B, y2: H - B, class: 'baseline' }));
  const total = u.totals.allowed + u.totals.limited + u.totals.refused;
  return s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'usage-title usage-desc', class: 'chart', 'data-total': total },
    s('title', { id: 'usage-title' }, `Requests per ${u.step === '1h0m0s' ? 'hour' : 'step'}, ${fmtTime(u.from)} to ${fmtTime(u.to)}`),
    s('desc', { id: 'usage-desc' }, `${u.totals.allowed} allowed, ${u.totals.limited} rate-limited, ${u.totals.refused} refused in all.`),
    parts);
}

/** usageTab is the usage chart of one user, with totals and a table. */
export async function usageTab(user, q) {
  const step = q.get('step') === '24h' ? '24h' : '1h';
  const { data: u } = await api('GET', `/v1/users/${enc(user.id)}/usage`, { query: { step } });
  const cur = u.currentHour;
  const curTotal = cur.allowed + cur.limited + cur.refused;
  const legend = h('ul', { class: 'legend' }, SERIES.map(([k, label, cls]) => h('li', {}, h('span', { class: `swatch ${cls}`, 'aria-hidden': 'true' }), `${label}: `, h('strong', { 'data-series': k }, String(u.totals[k])))));
  const limit = u.requestLimit > 0 ? `${u.requestLimit} requests per window of the gateway route` : 'the gateway route\'s default';
  const nonZero = u.buckets.filter((b) => b.allowed + b.limited + b.refused > 0);
  return h('div', { class: 'usage' },
    h('div', { class: 'row spread' },
      h('h2', {}, 'Requests through the gateway'),
      h('nav', { 'aria-label': 'Resolution', class: 'seg' },
        h('a', { href: `#/users/${enc(user.id)}/usage`, 'aria-current': step === '1h' ? 'page' : false }, 'Per hour'),
        h('a', { href: `#/users/${enc(user.id)}/usage?step=24h`, 'aria-current': step === '24h' ? 'page' : false }, 'Per day'),
        h('button', { type: 'button', class: 'small secondary', onclick: () => window.dispatchEvent(new HashChangeEvent('hashchange')) }, 'Refresh'))),
    h('div', { class: 'card now' },
      h('h3', {}, 'This hour'),
      h('p', { id: 'usage-now' }, `${curTotal} requests since ${fmtTime(cur.start)}: ${cur.allowed} allowed, ${cur.limited} rate-limited, ${cur.refused} refused.`),
      h('p', {}, 'Request limit: ', h('strong', {}, limit), '. ',
        cur.limited > 0 ? h('span', { class: 'warn' }, 'The limit was reached this hour.') : 'The limit has not been reached this hour.'),
      u.requestLimit > 0 ? h('div', { class: 'row' }, h('label', { for: 'limit-meter' }, 'Allowed this hour, in windows\' worth of the limit:'),
        h('meter', { id: 'limit-meter', min: 0, max: Math.max(u.requestLimit, cur.allowed), low: u.requestLimit * 0.8, high: u.requestLimit * 0.95, optimum: 0, value: cur.allowed }, `${cur.allowed} of ${u.requestLimit}`),
        h('span', {}, `${cur.allowed} / ${u.requestLimit}`)) : null),
    chart(u),
    legend,
    h('p', { class: 'hint' }, `Counted by the gateway per user and hour, written to the store in batches every few seconds, kept for ${retention(u.retention)}. Times are UTC.`),
    h('details', {}, h('summary', {}, `Table of the ${nonZero.length} ${step === '1h' ? 'hour' : 'day'}${nonZero.length === 1 ? '' : 's'} with requests`),
      table('Usage by period', ['Start', 'Allowed', 'Rate-limited', 'Refused'], nonZero.map((b) => [fmtTime(b.start), String(b.allowed), String(b.limited), String(b.refused)]), 'No requests in this period.')));
}
