// Roles and permissions of one user, per tenant (workspace).
import { api, enc, can } from './api.js';
import { h, field, table, badge, timeEl, errorSlot, formData, announce, select } from './ui.js';
import { render } from './app.js';

// permBody is the permission with a new status: the API replaces the
// whole permission, so the roles go along unchanged; version guards
// against a concurrent change (412).
function permBody(perm, status) {
  return {
    user: { id: perm.user.id }, workspace: { id: perm.workspaceId }, role: perm.role, status, version: perm.version,
    customerRoles: perm.customerRoles || [], accessControlEntities: perm.accessControlEntities || [],
  };
}

const STANDARD = [['ADMIN', 'ADMIN'], ['MEMBER', 'MEMBER'], ['VIEWER', 'VIEWER']];

/** ownAccess lists a user's permissions in every tenant, read-only: what a
 * user reads about itself without administering (GET …/roles). */
function ownAccess(user, roles) {
  const rows = ((roles && roles.tenants) || []).map((t) => [t.workspace, badge(t.status), t.role, (t.customerRoles || []).join(', ') || '—']);
  return h('div', {},
    h('p', { class: 'notice' }, 'Your permissions and roles in every tenant, read-only: the administrators of a tenant change them.'),
    table('Permissions', ['Tenant', 'Status', 'Role', 'Customer roles'], rows, `${user.name} holds no permission.`));
}

/** accessTab shows the user's permission and roles in one tenant. */
export async function accessTab(user, q, ctx = {}) {
  if (!ctx.manage && !can.administer()) return ownAccess(user, ctx.roles);
  const ws = q.get('workspace') || user.primaryTenant;
  const err = errorSlot(render);
  const act = async (what, fn) => {
    err.clear();
    try {
      await fn();
      announce(what);
      render();
    } catch (e) { err.show(e); }
  };
  const pick = h('form', {
    class: 'filters',
    onsubmit: (e) => {
      e.preventDefault();
      location.hash = `#/users/${enc(user.id)}/access?workspace=${enc(formData(e.target).workspace)}`;
    },
  }, field('Tenant', h('input', { name: 'workspace', value: ws, required: true })), h('button', { type: 'submit', class: 'secondary' }, 'Show'));

  const [permsRes, rolesRes] = await Promise.allSettled([
    api('GET', `/v1/workspaces/${enc(ws)}/permissions`, { query: { user: user.id, size: 10 } }),
    api('GET', `/v1/users/${enc(user.id)}/roles`, { query: { workspace: ws } }),
  ]);
  const perm = permsRes.status === 'fulfilled' ? (permsRes.value.data || [])[0] : null;
  const roles = rolesRes.status === 'fulfilled' ? rolesRes.value.data : null;
  const roleURL = (key) => `/v1/users/${enc(user.id)}/roles/${enc(key)}`;
  const parts = [];
  if (!perm) {
    parts.push(h('p', { class: 'empty' }, `${user.name} has no permission in tenant ${ws}.`));
    if (permsRes.status === 'rejected') err.show(permsRes.reason);
  } else {
    parts.push(h('div', { class: 'card' }, h('h2', {}, `Permission in ${ws}`),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Status'), h('dd', {}, badge(perm.status)),
        h('dt', {}, 'Role'), h('dd', {}, perm.role),
        h('dt', {}, 'Last login'), h('dd', {}, timeEl(perm.lastLogin)),
        h('dt', {}, 'Permission id'), h('dd', { class: 'mono' }, perm.id)),
      h('div', { class: 'row' },
        perm.status === 'ARCHIVED'
          ? h('button', { type: 'button', class: 'secondary', onclick: () => act('Permission reactivated.', () => api('POST', '/v1/permissions', { body: permBody(perm, 'ACTIVE') })) }, 'Reactivate permission')
          : h('button', {
            type: 'button',
            class: 'danger',
            onclick: () => {
              if (!confirm(`Archive the permission of ${user.name} in ${ws}? Its credentials stop working in ${ws} at once.`)) return;
              act('Permission archived.', () => api('POST', '/v1/permissions', { body: permBody(perm, 'ARCHIVED') }));
            },
          }, 'Archive permission'))));
  }
  if (roles) {
    const roleSel = select('role', STANDARD, roles.role);
    const custom = (roles.customerRoles || []).map((r) => [r, h('button', {
      type: 'button', class: 'small secondary', 'aria-label': `Remove customer role ${r}`, onclick: () => act(`Customer role ${r} removed.`, () => api('DELETE', roleURL(r), { query: { workspace: ws } })),
    }, 'Remove')]);
    parts.push(h('div', { class: 'card' }, h('h2', {}, `Roles in ${ws}`),
      h('p', {}, 'Changes apply on the gateway at once (X-Auth-Role and the customer roles it forwards).'),
      h('form', {
        class: 'row',
        onsubmit: (e) => { e.preventDefault(); act(`Role set to ${roleSel.value}.`, () => api('PUT', roleURL(roleSel.value), { query: { workspace: ws } })); },
      }, field('Standard role', roleSel), h('button', { type: 'submit' }, 'Set role')),
      h('h3', {}, 'Customer roles'),
      table('Customer roles', ['Role', 'Action'], custom, 'No customer roles.'),
      h('form', {
        class: 'row',
        onsubmit: (e) => {
          e.preventDefault();
          const r = formData(e.target).customRole.trim();
          if (r) act(`Customer role ${r} added.`, () => api('PUT', roleURL(r), { query: { workspace: ws } }));
        },
      }, field('Add a customer role', h('input', { name: 'customRole', autocomplete: 'off' })), h('button', { type: 'submit', class: 'secondary' }, 'Add'))));
  }
  const invite = h('form', {
    class: 'card',
    onsubmit: (e) => {
      e.preventDefault();
      const v = formData(e.target);
      act(`Invitation into ${v.workspace} sent.`, () => api('POST', '/v1/permissions', { body: { user: { id: user.id }, workspace: { id: v.workspace }, role: v.role, status: 'INVITED' } }));
    },
  }, h('h2', {}, 'Invite into another tenant'),
  h('p', {}, 'The user accepts the invitation with its own key (POST /v1/permissions/{id}/accept); until then it grants nothing.'),
  h('div', { class: 'row' }, field('Tenant', h('input', { name: 'workspace', required: true, autocomplete: 'off' })), field('Role', select('role', STANDARD, 'MEMBER'))),
  h('button', { type: 'submit', class: 'secondary' }, 'Invite'));
  return h('div', {}, pick, err, ...parts, invite);
}
