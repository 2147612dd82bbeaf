// History of a user, the activity log, and the personal-data export.
import { api, enc } from './api.js';
import { h, field, table, timeEl, pager, formData } from './ui.js';

function changes(c) {
  if (!c) return '—';
  return h('ul', { class: 'changes' }, Object.entries(c).map(([k, v]) => h('li', {}, h('strong', {}, k), `: ${fmt(v && v.from)} → ${fmt(v && v.to)}`)));
}

function fmt(v) {
  if (v === undefined || v === null || v === '') return '∅';
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

/** historyTab is the user's changelog, newest first, paged. */
export async function historyTab(user, q) {
  const page = Number(q.get('page') || 1);
  const size = 25;
  const { data, envelope } = await api('GET', `/v1/users/${enc(user.id)}/history`, { query: { page, size } });
  const needle = (q.get('action') || '').toLowerCase();
  const items = needle ? data.filter((e) => `${e.action} ${e.target}`.toLowerCase().includes(needle)) : data;
  const filter = h('form', {
    class: 'filters',
    role: 'search',
    onsubmit: (e) => {
      e.preventDefault();
      const v = formData(e.target);
      location.hash = `#/users/${enc(user.id)}/history?${new URLSearchParams(Object.entries(v).filter(([, x]) => x))}`;
    },
  }, field('Action or target contains', h('input', { type: 'search', name: 'action', value: q.get('action') || '' }), 'Filters the entries of this page.'),
  h('button', { type: 'submit', class: 'secondary' }, 'Filter'));
  return h('div', {}, filter,
    table('History', ['When', 'Actor', 'Action', 'Target', 'Changes'], items.map((e) => [timeEl(e.at), h('span', { class: 'mono' }, e.actor), e.action, h('span', { class: 'mono' }, e.target || '—'), changes(e.changes)]), 'No history entries.'),
    pager(page, size, envelope.total, (p) => `#/users/${enc(user.id)}/history?${new URLSearchParams({ ...Object.fromEntries(q), page: p })}`));
}

function isoOrEmpty(local) {
  return local ? new Date(local).toISOString() : '';
}

/** activityScreen is the admin API's activity log, filterable. */
export async function activityScreen(q) {
  const page = Number(q.get('page') || 1);
  const size = 50;
  const { data, envelope } = await api('GET', '/v1/activity', {
    query: { page, size, actor: q.get('actor'), tenant: q.get('tenant'), from: q.get('from'), to: q.get('to') },
  });
  const filter = h('form', {
    class: 'filters',
    role: 'search',
    onsubmit: (e) => {
      e.preventDefault();
      const v = formData(e.target);
      v.from = isoOrEmpty(v.from);
      v.to = isoOrEmpty(v.to);
      location.hash = `#/activity?${new URLSearchParams(Object.entries(v).filter(([, x]) => x))}`;
    },
  },
  field('Actor (user id)', h('input', { name: 'actor', value: q.get('actor') || '' })),
  field('Tenant', h('input', { name: 'tenant', value: q.get('tenant') || '' })),
  field('From', h('input', { type: 'datetime-local', name: 'from', value: q.get('from') ? toLocal(q.get('from')) : '' })),
  field('To', h('input', { type: 'datetime-local', name: 'to', value: q.get('to') ? toLocal(q.get('to')) : '' })),
  h('button', { type: 'submit', class: 'secondary' }, 'Filter'));
  return h('section', {}, h('h1', {}, 'Activity log'),
    h('p', {}, 'Every call to the admin API, newest first: who, what, and the answer.'),
    filter,
    table('Activity', ['When', 'Actor', 'Call', 'Status', 'Tenant'], data.map((a) => [timeEl(a.at), h('span', { class: 'mono' }, a.actor || '—'), h('span', { class: 'mono' }, `${a.method} ${a.path}`), String(a.status), a.tenant || '—']), 'No calls match.'),
    pager(page, size, envelope.total, (p) => `#/activity?${new URLSearchParams({ ...Object.fromEntries(q), page: p })}`));
}

function toLocal(iso) {
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** exportUser downloads everything stored about the user as JSON. */
export async function exportUser(user) {
  const { data } = await api('GET', `/v1/users/${enc(user.id)}/export`);
  const blob = new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' });
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: `keygate-user-${user.id}.json` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
