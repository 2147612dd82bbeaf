// Users: the paged list, the create form (with the first API token) and
// the user page with its tabs.
import { api, enc, can, session } from './api.js';
import { h, field, table, badge, timeEl, errorSlot, pager, formData, announce, select, onceBox, dateToISO } from './ui.js';
import { render } from './app.js';
import { keysTab, secretsTab } from './creds.js';
import { accessTab } from './access.js';
import { usageTab } from './usage.js';
import { historyTab, exportUser } from './audit.js';

const TYPES = [['', 'Any type'], ['TECHNICAL', 'Technical'], ['SERVICE', 'Service'], ['APPLICATION', 'Application']];
const STATUSES = [['', 'Any status'], ['ACTIVE', 'Active'], ['INACTIVE', 'Inactive'], ['CREATE', 'Create'], ['DELETING', 'Deleting'], ['DELETED', 'Deleted']];
const ROLES = [['', 'Any role'], ['ADMIN', 'Admin'], ['MEMBER', 'Member'], ['VIEWER', 'Viewer']];
const SORTS = [['name', 'Name A–Z'], ['-name', 'Name Z–A'], ['-createdAt', 'Newest first'], ['createdAt', 'Oldest first'], ['id', 'Id']];

/** usersScreen lists users one page at a time (the server pages). */
export async function usersScreen(q) {
  const admin = can.administer();
  const page = Number(q.get('page') || 1);
  const size = 25;
  const sort = q.get('sort') || 'name';
  const { data, envelope } = await api('GET', '/v1/users', {
    query: { page, size, sort, q: q.get('q'), type: q.get('type'), status: q.get('status'), role: q.get('role'), tenant: q.get('tenant') },
  });
  const filter = h('form', {
    class: 'filters',
    role: 'search',
    'aria-label': 'Filter users',
    onsubmit: (e) => {
      e.preventDefault();
      const v = formData(e.target);
      location.hash = `#/users?${new URLSearchParams(Object.entries(v).filter(([, x]) => x))}`;
    },
  },
  field('Search', h('input', { type: 'search', name: 'q', value: q.get('q') || '', placeholder: admin ? 'name, id, e-mail…' : 'name or id…' })),
  field('Type', select('type', TYPES, q.get('type') || '')),
  field('Status', select('status', STATUSES, q.get('status') || '')),
  field('Role', select('role', ROLES, q.get('role') || '')),
  admin ? field('Tenant', h('input', { name: 'tenant', value: q.get('tenant') || '', size: 10 })) : null,
  field('Sort', select('sort', SORTS, sort)),
  h('button', { type: 'submit', class: 'secondary' }, 'Apply'));
  const rows = data.map((u) => {
    const cells = [h('a', { href: `#/users/${enc(u.id)}` }, u.name), h('span', { class: 'mono' }, u.id), u.type, u.role, badge(u.status)];
    return admin ? [...cells, u.primaryTenant, timeEl(u.lastUsedAt)] : cells;
  });
  const headers = ['Name', 'Id', 'Type', 'Role', 'Status'];
  const me = session.identity();
  return h('section', {},
    h('div', { class: 'heading-row' }, h('h1', {}, 'Users'), admin ? h('a', { class: 'button', href: '#/users/new' }, 'New user') : null),
    admin ? null : h('p', { class: 'notice' }, `As a ${me.role || 'user'} of ${me.tenant} you see the profiles of its users: name, type, role and status. Your own record, keys and roles are under "My account".`),
    filter,
    table('Users', admin ? [...headers, 'Primary tenant', 'Last used'] : headers, rows, 'No users match these filters.'),
    pager(page, size, envelope.total, (p) => `#/users?${new URLSearchParams({ ...Object.fromEntries(q), page: p })}`));
}

function inDays(n) {
  return new Date(Date.now() + n * 86400000).toISOString().slice(0, 10);
}

/** newUserScreen creates a user and, in the same call, its first API token. */
export async function newUserScreen() {
  const err = errorSlot(render);
  const out = h('div', {});
  const withKey = h('input', { type: 'checkbox', name: 'withKey', checked: true });
  const keyFields = h('fieldset', {}, h('legend', {}, 'First API token'),
    field('Token name', h('input', { name: 'keyName', value: 'default', autocomplete: 'off' })),
    field('Expires on', h('input', { type: 'date', name: 'keyExpires', value: inDays(365), min: inDays(1) }), 'The token stops working at the end of this day (UTC).'));
  withKey.addEventListener('change', () => { keyFields.disabled = !withKey.checked; });
  const form = h('form', {
    class: 'card',
    onsubmit: async (e) => {
      e.preventDefault();
      err.clear();
      const v = formData(e.target);
      const body = { name: v.name, type: v.type, role: v.role };
      if (v.primaryTenant) body.primaryTenant = v.primaryTenant;
      if (v.scope) body.scope = v.scope;
      if (v.description) body.description = v.description;
      if (v.email) body.email = v.email;
      if (v.requestLimit) body.requestLimit = Number(v.requestLimit);
      if (withKey.checked) body.key = { name: v.keyName || 'default', expiresAt: dateToISO(v.keyExpires) };
      try {
        const { data } = await api('POST', '/v1/users', { body });
        announce(`User ${data.name} created.`);
        form.hidden = true;
        out.replaceChildren(h('div', { class: 'card' },
          h('h2', {}, `User ${data.name} created`),
          h('p', {}, 'Id ', h('span', { class: 'mono' }, data.id), ` · ${data.type} · ${data.role} in ${data.primaryTenant}`),
          data.key ? onceBox('The new API token', data.key.key, h('p', {}, `Token "${data.key.name}", expires ${new Date(data.key.expiresAt).toUTCString()}.`)) : null,
          h('p', {}, h('a', { class: 'button', href: `#/users/${enc(data.id)}` }, 'Open the user'))));
        const first = out.querySelector('.once-value') || out.querySelector('h2');
        if (first) first.focus();
      } catch (ex) { err.show(ex); }
    },
  },
  h('div', { class: 'grid' },
    field('Name', h('input', { name: 'name', required: true, autocomplete: 'off' }), 'Unique in the primary tenant.'),
    field('Type', select('type', TYPES.slice(1), 'TECHNICAL')),
    field('Role', select('role', ROLES.slice(1), 'MEMBER'), 'Its role in the primary tenant.'),
    field('Primary tenant', h('input', { name: 'primaryTenant', autocomplete: 'off', placeholder: (session.identity() || {}).tenant || '' }), `Default: your own tenant (${(session.identity() || {}).tenant}).`),
    field('Scope', h('input', { name: 'scope', autocomplete: 'off' }), 'Optional: the space or area the user belongs to (seed 004); the gateway can forward it (identity_headers scope).'),
    field('Description', h('input', { name: 'description', autocomplete: 'off' })),
    field('E-mail', h('input', { type: 'email', name: 'email', autocomplete: 'off' })),
    field('Request limit', h('input', { type: 'number', name: 'requestLimit', min: 0 }), 'Requests per window of the gateway route; empty: the route default.')),
  h('div', { class: 'check' }, withKey, h('label', { for: (withKey.id = 'withKey') }, 'Also create its first API token')),
  keyFields,
  err,
  h('button', { type: 'submit' }, 'Create user'));
  return h('section', {}, h('h1', {}, 'New user'), form, out);
}

const TABS = [['overview', 'Overview'], ['keys', 'Access keys'], ['secrets', 'Signing secrets'], ['access', 'Roles & permissions'], ['usage', 'Usage'], ['history', 'History']];
// What a user reads of its own record without administering it (the
// README's "Who may do what").
const OWN_TABS = ['overview', 'keys', 'access'];

/**
 * standing describes the user's standing in its primary tenant from its
 * permission there: "MEMBER in acme", or why it has no access there.
 */
function standing(user, roles) {
  const entry = roles && (roles.tenants || []).find((t) => t.workspace === user.primaryTenant);
  if (!roles) return `${user.role} in ${user.primaryTenant}`;
  if (!entry) return `no permission in ${user.primaryTenant}`;
  if (entry.status === 'ACTIVE') return `${entry.role} in ${user.primaryTenant}`;
  return `no access in ${user.primaryTenant}: permission ${entry.status} (role ${entry.role})`;
}

/** userScreen shows one user with its tabs (a profile only, for the
 * other members of a tenant). */
export async function userScreen(id, tab, q) {
  const { data: user } = await api('GET', `/v1/users/${enc(id)}`);
  const manage = can.manage(user);
  const self = can.self(user);
  const profile = !manage && !self && !can.administer();
  if (profile) {
    return h('section', {},
      h('p', { class: 'crumbs' }, h('a', { href: '#/users' }, 'Users'), ' / '),
      h('div', { class: 'heading-row' }, h('h1', {}, user.name), badge(user.status)),
      h('p', { class: 'sub' }, h('span', { class: 'mono' }, user.id), ` · ${user.type} · ${user.role}`),
      h('p', { class: 'notice' }, 'This is the profile other members of the tenant see: name, type, role and status. Its keys, secrets and history are for its administrators.'));
  }
  const allowed = manage || can.administer() ? TABS : TABS.filter(([t]) => OWN_TABS.includes(t));
  if (!allowed.some(([t]) => t === tab)) tab = 'overview';
  let roles = null;
  try {
    ({ data: roles } = await api('GET', `/v1/users/${enc(id)}/roles`));
  } catch { /* not visible to this caller: the record's role is all there is */ }
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'User sections' }, h('ul', {}, allowed.map(([t, label]) => h('li', {},
    h('a', { href: `#/users/${enc(id)}/${t}`, 'aria-current': t === tab ? 'page' : false }, label)))));
  const body = await ({
    overview: overviewTab, keys: keysTab, secrets: secretsTab, access: accessTab, usage: usageTab, history: historyTab,
  }[tab] || overviewTab)(user, q, { manage, roles });
  return h('section', {},
    h('p', { class: 'crumbs' }, h('a', { href: '#/users' }, 'Users'), ' / '),
    h('div', { class: 'heading-row' }, h('h1', {}, user.name), badge(user.status), self ? h('span', { class: 'badge' }, 'you') : null),
    h('p', { class: 'sub', id: 'user-standing' }, h('span', { class: 'mono' }, user.id), ` · ${user.type} · ${standing(user, roles)}`),
    tabs, body);
}

async function overviewTab(user, q, ctx = {}) {
  const err = errorSlot(render);
  const act = async (what, fn) => {
    try {
      await fn();
      announce(what);
      render();
    } catch (e) { err.show(e); }
  };
  const facts = h('dl', { class: 'facts' },
    h('dt', {}, 'Primary tenant'), h('dd', {}, user.primaryTenant),
    h('dt', {}, 'Scope'), h('dd', { id: 'user-scope' }, user.scope || '—'),
    h('dt', {}, 'Created'), h('dd', {}, timeEl(user.createdAt)),
    h('dt', {}, 'Last used'), h('dd', {}, timeEl(user.lastUsedAt)),
    h('dt', {}, 'Customer roles'), h('dd', {}, (user.customerRoles || []).join(', ') || '—'),
    h('dt', {}, 'Access control entities'), h('dd', {}, (user.accessControlEntities || []).join(', ') || '—'),
    h('dt', {}, 'E-mail'), h('dd', {}, user.email || '—'),
    h('dt', {}, 'Request limit'), h('dd', {}, user.requestLimit ? String(user.requestLimit) : 'the route default'),
    h('dt', {}, 'Version'), h('dd', {}, String(user.version)),
    h('dt', {}, 'Tags'), h('dd', {}, (user.tags || []).join(', ') || '—'),
    h('dt', {}, 'Metadata'), h('dd', {}, user.meta ? h('code', { class: 'mono' }, JSON.stringify(user.meta)) : '—'),
    user.origin ? [h('dt', {}, 'Imported from'), h('dd', {}, `${user.origin.source} (${user.origin.externalId}), `, timeEl(user.origin.importedAt))] : null,
    user.plannedPurgeDate ? [h('dt', {}, 'Planned purge'), h('dd', {}, timeEl(user.plannedPurgeDate))] : null);
  if (!ctx.manage) {
    return h('div', {}, h('p', { class: 'notice' }, 'Your own record, read-only: an administrator of its tenant changes it.'), facts);
  }
  const edit = h('form', {
    class: 'card',
    onsubmit: (e) => {
      e.preventDefault();
      const v = formData(e.target);
      act('Saved.', () => api('PATCH', `/v1/users/${enc(user.id)}`, {
        ifMatch: user.version,
        body: { name: v.name, description: v.description, email: v.email, scope: v.scope, requestLimit: Number(v.requestLimit || 0) },
      }));
    },
  }, h('h2', {}, 'Details'),
  h('div', { class: 'grid' },
    field('Name', h('input', { name: 'name', value: user.name, required: true })),
    field('Description', h('input', { name: 'description', value: user.description || '' })),
    field('E-mail', h('input', { type: 'email', name: 'email', value: user.email || '' })),
    field('Scope', h('input', { name: 'scope', value: user.scope || '' }), 'The space or area the user belongs to; forwarded as X-Auth-Scope where identity_headers names scope.'),
    field('Request limit', h('input', { type: 'number', min: 0, name: 'requestLimit', value: user.requestLimit || 0 }), '0: the gateway route\'s default.')),
  h('button', { type: 'submit' }, 'Save'));
  const status = h('div', { class: 'card' }, h('h2', {}, 'Status'),
    h('p', {}, 'An INACTIVE user\'s credentials stop working at once; ACTIVE makes them work again. Deleting makes the user DELETING (its keys revoked, secrets deactivated, permissions archived, at once), then DELETED (its usage counts taken off it); everything about it is purged at its planned purge date.'),
    h('div', { class: 'row' },
      user.status === 'ACTIVE' ? h('button', { type: 'button', class: 'secondary', onclick: () => act('User deactivated.', () => api('PATCH', `/v1/users/${enc(user.id)}`, { ifMatch: user.version, body: { status: 'INACTIVE' } })) }, 'Deactivate') : null,
      user.status === 'INACTIVE' || user.status === 'CREATE' ? h('button', { type: 'button', class: 'secondary', onclick: () => act('User activated.', () => api('PATCH', `/v1/users/${enc(user.id)}`, { ifMatch: user.version, body: { status: 'ACTIVE' } })) }, 'Activate') : null,
      user.status !== 'DELETED' ? h('button', {
        type: 'button',
        class: 'danger',
        onclick: () => {
          if (!confirm(`Delete ${user.name}? Its keys stop working at once; everything about it is purged later.`)) return;
          act(`User ${user.name} deleted.`, () => api('DELETE', `/v1/users/${enc(user.id)}`, { ifMatch: user.version }));
        },
      }, 'Delete user') : null,
      h('button', { type: 'button', class: 'secondary', onclick: () => exportUser(user).catch((e) => err.show(e)) }, 'Download personal data (JSON)')));
  return h('div', {}, err, facts, status, edit);
}
