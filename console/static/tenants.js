// Tenants (superadmins): list, create, archive and reactivate.
import { api, enc } from './api.js';
import { h, field, table, badge, timeEl, errorSlot, pager, formData, announce, select } from './ui.js';
import { render } from './app.js';

export async function tenantsScreen(q) {
  const page = Number(q.get('page') || 1);
  const size = 20;
  const { data, envelope } = await api('GET', '/v1/tenants', { query: { page, size, q: q.get('q'), status: q.get('status'), sort: 'id' } });
  const err = errorSlot(render);
  const rows = data.map((t) => [
    h('a', { href: `#/tenants/${enc(t.id)}`, class: 'mono', 'aria-label': `Permissions in ${t.id}` }, t.id), t.name, badge(t.status), timeEl(t.createdAt),
    h('button', {
      type: 'button',
      class: 'secondary small',
      'aria-label': `${t.status === 'ARCHIVED' ? 'Reactivate' : 'Archive'} tenant ${t.id}`,
      onclick: async () => {
        if (t.status !== 'ARCHIVED' && !confirm(`Archive tenant ${t.id}? Every key, token and signature of its users stops working at once.`)) return;
        try {
          await api('PATCH', `/v1/tenants/${enc(t.id)}`, { body: { status: t.status === 'ARCHIVED' ? 'ACTIVE' : 'ARCHIVED' }, ifMatch: t.version });
          announce(`Tenant ${t.id} ${t.status === 'ARCHIVED' ? 'reactivated' : 'archived'}.`);
          render();
        } catch (e) { err.show(e); }
      },
    }, t.status === 'ARCHIVED' ? 'Reactivate' : 'Archive'),
  ]);
  const create = h('form', {
    class: 'card',
    onsubmit: async (e) => {
      e.preventDefault();
      const v = formData(e.target);
      try {
        await api('POST', '/v1/tenants', { body: { id: v.id, name: v.name || v.id } });
        announce(`Tenant ${v.id} created.`);
        e.target.reset();
        render();
      } catch (ex) { err.show(ex); }
    },
  }, h('h2', {}, 'Create a tenant'),
  h('div', { class: 'row' },
    field('Tenant id', h('input', { name: 'id', required: true, pattern: '[A-Za-z0-9._\\-]+', autocomplete: 'off' }), 'Letters, digits, dot, dash, underscore; cannot change later.'),
    field('Name', h('input', { name: 'name', autocomplete: 'off' }))),
  h('button', { type: 'submit' }, 'Create tenant'));
  const filter = h('form', {
    class: 'filters',
    role: 'search',
    onsubmit: (e) => {
      e.preventDefault();
      const v = formData(e.target);
      location.hash = `#/tenants?${new URLSearchParams(Object.entries(v).filter(([, x]) => x))}`;
    },
  }, field('Search', h('input', { type: 'search', name: 'q', value: q.get('q') || '' })),
  field('Status', select('status', [['', 'Any'], ['ACTIVE', 'Active'], ['ARCHIVED', 'Archived']], q.get('status') || '')),
  h('button', { type: 'submit', class: 'secondary' }, 'Filter'));
  return h('section', {},
    h('h1', {}, 'Tenants'),
    h('p', {}, 'A tenant is a workspace: users hold permissions in tenants, and an archived tenant\'s credentials stop working until it is reactivated.'),
    err, filter,
    table('Tenants', ['Id', 'Name', 'Status', 'Created', 'Action'], rows, 'No tenants match.'),
    pager(page, size, envelope.total, (p) => `#/tenants?${new URLSearchParams({ ...Object.fromEntries(q), page: p })}`),
    create);
}

const PSTATUS = [['', 'Any status'], ['ACTIVE', 'Active'], ['INVITED', 'Invited'], ['ARCHIVED', 'Archived']];

/** permissionsScreen lists the permissions (and invitations) of one tenant. */
export async function permissionsScreen(id, q) {
  const page = Number(q.get('page') || 1);
  const size = 25;
  const { data, envelope } = await api('GET', `/v1/workspaces/${enc(id)}/permissions`, {
    query: { page, size, q: q.get('q'), status: q.get('status'), sort: 'createdAt' },
  });
  const err = errorSlot(render);
  const setStatus = async (p, status) => {
    err.clear();
    try {
      await api('POST', '/v1/permissions', {
        body: {
          user: { id: p.user.id }, workspace: { id }, role: p.role, status, version: p.version,
          customerRoles: p.customerRoles || [], accessControlEntities: p.accessControlEntities || [],
        },
      });
      announce(`Permission of ${p.user.userName || p.user.id} ${status === 'ARCHIVED' ? 'archived' : 'reactivated'}.`);
      render();
    } catch (e) { err.show(e); }
  };
  const rows = data.map((p) => [
    h('a', { href: `#/users/${enc(p.user.id)}/access?workspace=${enc(id)}` }, p.user.userName || p.user.id),
    p.user.type || '—', p.role, badge(p.status), timeEl(p.lastLogin),
    p.invitedByUser ? h('span', { class: 'mono' }, p.invitedByUser.id) : '—',
    p.status === 'ARCHIVED'
      ? h('button', { type: 'button', class: 'small secondary', 'aria-label': `Reactivate the permission of ${p.user.userName || p.user.id}`, onclick: () => setStatus(p, 'ACTIVE') }, 'Reactivate')
      : h('button', {
        type: 'button',
        class: 'small danger',
        'aria-label': `Archive the permission of ${p.user.userName || p.user.id}`,
        onclick: () => { if (confirm(`Archive this permission? ${p.status === 'INVITED' ? 'The invitation is withdrawn.' : 'The user\'s credentials stop working in this tenant at once.'}`)) setStatus(p, 'ARCHIVED'); },
      }, p.status === 'INVITED' ? 'Withdraw' : 'Archive'),
  ]);
  const filter = h('form', {
    class: 'filters',
    role: 'search',
    onsubmit: (e) => {
      e.preventDefault();
      const v = formData(e.target);
      location.hash = `#/tenants/${enc(id)}?${new URLSearchParams(Object.entries(v).filter(([, x]) => x))}`;
    },
  }, field('Search', h('input', { type: 'search', name: 'q', value: q.get('q') || '' })),
  field('Status', select('status', PSTATUS, q.get('status') || '')),
  h('button', { type: 'submit', class: 'secondary' }, 'Filter'));
  return h('section', {},
    h('p', { class: 'crumbs' }, h('a', { href: '#/tenants' }, 'Tenants'), ' / '),
    h('h1', {}, `Permissions in ${id}`),
    h('p', {}, 'Who may act in this tenant: ACTIVE permissions, open invitations (INVITED, until the user accepts) and archived ones. Invite a user from its "Roles & permissions" tab.'),
    err, filter,
    table(`Permissions in ${id}`, ['User', 'Type', 'Role', 'Status', 'Last login', 'Invited by', 'Action'], rows, 'No permissions match.'),
    pager(page, size, envelope.total, (p) => `#/tenants/${enc(id)}?${new URLSearchParams({ ...Object.fromEntries(q), page: p })}`));
}
