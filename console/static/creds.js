// Access keys and signing secrets of one user.
import { api, enc } from './api.js';
import { h, field, table, badge, timeEl, errorSlot, formData, announce, select, onceBox, dateToISO, dateInputValue } from './ui.js';
import { render } from './app.js';

function inDays(n) {
  return new Date(Date.now() + n * 86400000).toISOString().slice(0, 10);
}

const GRACE = [['0s', 'No grace: the old key stops now'], ['1h', '1 hour'], ['24h', '24 hours'], ['168h', '7 days']];

/** keysTab lists a user's access keys (masked) with their actions (for
 * those who manage the user; its own keys read-only otherwise). */
export async function keysTab(user, q, ctx = {}) {
  const base = `/v1/users/${enc(user.id)}/keys`;
  const { data: list } = await api('GET', base, { query: { size: 100 } });
  const err = errorSlot(render);
  const once = h('div', {});
  const act = async (what, fn) => {
    err.clear();
    try {
      const res = await fn();
      announce(what);
      if (res && res.data && res.data.key) {
        // A new key: show it once, then the refreshed list below it.
        const fresh = await keysTab(user, q, ctx);
        fresh.prepend(onceBox('The new access key', res.data.key, h('p', {}, `Key "${res.data.name}", expires ${new Date(res.data.expiresAt).toUTCString()}.`)));
        document.querySelector('#keys-tab').replaceWith(fresh);
        fresh.querySelector('.once-value').focus();
        return;
      }
      render();
    } catch (e) { err.show(e); }
  };
  const rows = list.map((k) => {
    const expiry = h('input', { type: 'date', value: dateInputValue(k.expiresAt), 'aria-label': `New expiry of ${k.name}`, min: inDays(0) });
    const grace = select('grace', GRACE, '0s');
    grace.setAttribute('aria-label', `Grace period when replacing ${k.name}`);
    const live = k.status !== 'REVOKED' && !k.replacedBy;
    // A replaced key in its grace period still works: it can be revoked early.
    const inGrace = k.status !== 'REVOKED' && k.replacedBy && k.usable;
    const revoke = (label) => h('button', {
      type: 'button',
      class: 'small danger',
      onclick: () => {
        if (!confirm(`Revoke key "${k.name}" (${k.masked}) for good? Requests with it are refused at once.`)) return;
        act('Key revoked.', () => api('DELETE', `${base}/${enc(k.id)}`, { ifMatch: k.version }));
      },
    }, label);
    const replace = () => {
      const when = grace.value === '0s' ? 'stops working at once' : `keeps working for ${grace.options[grace.selectedIndex].text} after the replacement`;
      if (!confirm(`Replace key "${k.name}" (${k.masked})? A new key is created and shown once; the old key ${when}. Integrations still using it must switch to the new key.`)) return;
      act('Key replaced.', () => api('POST', `${base}/${enc(k.id)}/replace`, { body: { gracePeriod: grace.value } }));
    };
    let actions = '—';
    if (ctx.manage && inGrace) {
      actions = h('details', { class: 'actions' }, h('summary', {}, 'Actions', h('span', { class: 'sr-only' }, ` for key ${k.name}`)),
        h('div', { class: 'stack' }, h('p', { class: 'hint' }, 'Replaced: it stops at the end of its grace period, or now.'), h('div', { class: 'row' }, revoke('Revoke now'))));
    }
    if (ctx.manage && live) {
      actions = h('details', { class: 'actions' }, h('summary', {}, 'Actions', h('span', { class: 'sr-only' }, ` for key ${k.name}`)),
      h('div', { class: 'stack' },
        h('div', { class: 'row' }, grace, h('button', { type: 'button', class: 'small', onclick: replace }, 'Replace')),
        h('div', { class: 'row' }, expiry, h('button', { type: 'button', class: 'small secondary', onclick: () => act('Expiry changed.', () => api('PATCH', `${base}/${enc(k.id)}`, { ifMatch: k.version, body: { expiresAt: dateToISO(expiry.value) } })) }, 'Change expiry')),
        h('div', { class: 'row' },
          k.status === 'ACTIVE'
            ? h('button', { type: 'button', class: 'small secondary', onclick: () => act('Key disabled.', () => api('PATCH', `${base}/${enc(k.id)}`, { ifMatch: k.version, body: { status: 'INACTIVE' } })) }, 'Disable')
            : h('button', { type: 'button', class: 'small secondary', onclick: () => act('Key enabled.', () => api('PATCH', `${base}/${enc(k.id)}`, { ifMatch: k.version, body: { status: 'ACTIVE' } })) }, 'Enable'),
          revoke('Revoke'))));
    }
    // Imported keys: where from, and whether their first use still has to re-hash them.
    const origin = k.origin ? h('small', {}, ` imported from ${k.origin.source}${k.hashScheme ? ` (stored as its ${k.hashScheme} hash until first use)` : ''}${k.rehashedFrom ? ` (re-hashed from ${k.rehashedFrom})` : ''}`) : null;
    const about = (k.tags && k.tags.length) || k.meta ? h('small', {}, h('br'), (k.tags || []).join(', '), k.meta ? [' ', h('code', {}, JSON.stringify(k.meta))] : null) : null;
    return [h('span', {}, k.name, about), h('span', {}, h('span', { class: 'mono' }, k.masked), origin), badge(k.status), timeEl(k.expiresAt), timeEl(k.lastUsedAt),
      k.replacedBy ? h('span', {}, h('span', { class: 'mono' }, k.replacedBy), k.disableAt ? [h('br'), 'works until ', timeEl(k.disableAt)] : null) : '—',
      actions];
  });
  const create = h('form', {
    class: 'card',
    'aria-labelledby': 'newkey-h',
    onsubmit: (e) => {
      e.preventDefault();
      const v = formData(e.target);
      act('Key created.', () => api('POST', base, { body: { name: v.name, expiresAt: dateToISO(v.expires) } }));
    },
  }, h('h2', { id: 'newkey-h' }, 'Create an access key'),
  h('div', { class: 'row' },
    field('Key name', h('input', { name: 'name', required: true, autocomplete: 'off' }), 'Unique among this user\'s keys.'),
    field('Expires on', h('input', { type: 'date', name: 'expires', required: true, value: inDays(90), min: inDays(1) }))),
  h('button', { type: 'submit' }, 'Create key'));
  if (!ctx.manage) {
    return h('div', { id: 'keys-tab' }, h('p', { class: 'notice' }, 'Masked keys, read-only: an administrator of the user\'s tenant creates, replaces and revokes them.'),
      table('Access keys', ['Name', 'Key', 'Status', 'Expires', 'Last used', 'Replaced by', 'Actions'], rows, 'This user has no access keys.'));
  }
  return h('div', { id: 'keys-tab' }, once, err,
    table('Access keys', ['Name', 'Key', 'Status', 'Expires', 'Last used', 'Replaced by', 'Actions'], rows, 'This user has no access keys.'),
    create);
}

/** secretsTab lists a user's signing secrets (never their values). */
export async function secretsTab(user) {
  const base = `/v1/users/${enc(user.id)}/secrets`;
  const { data: list } = await api('GET', base, { query: { size: 100 } });
  const err = errorSlot(render);
  const live = list.filter((x) => x.status === 'ACTIVE').length;
  const act = async (what, fn) => {
    err.clear();
    try {
      const res = await fn();
      announce(what);
      if (res && res.data && res.data.secret) {
        const fresh = await secretsTab(user);
        fresh.prepend(onceBox('The new signing secret', res.data.secret, h('p', {}, `Secret "${res.data.name}" (${res.data.id}).`)));
        document.querySelector('#secrets-tab').replaceWith(fresh);
        fresh.querySelector('.once-value').focus();
        return;
      }
      render();
    } catch (e) { err.show(e); }
  };
  const rows = list.map((x) => [x.name || x.id, h('span', { class: 'mono' }, x.id), badge(x.status), timeEl(x.createdAt), timeEl(x.lastUsedAt),
    h('div', { class: 'row' },
      x.status === 'ACTIVE'
        ? h('button', { type: 'button', class: 'small secondary', 'aria-label': `Deactivate secret ${x.name || x.id}`, onclick: () => act('Secret deactivated.', () => api('PATCH', `${base}/${enc(x.id)}`, { ifMatch: x.version, body: { status: 'INACTIVE' } })) }, 'Deactivate')
        : h('button', { type: 'button', class: 'small secondary', 'aria-label': `Activate secret ${x.name || x.id}`, onclick: () => act('Secret activated.', () => api('PATCH', `${base}/${enc(x.id)}`, { ifMatch: x.version, body: { status: 'ACTIVE' } })) }, 'Activate'),
      x.status !== 'ACTIVE' ? h('button', {
        type: 'button',
        class: 'small danger',
        'aria-label': `Delete secret ${x.name || x.id}`,
        onclick: () => { if (confirm('Delete this secret for good?')) act('Secret deleted.', () => api('DELETE', `${base}/${enc(x.id)}`, { ifMatch: x.version })); },
      }, 'Delete') : null)]);
  const create = h('form', {
    class: 'card',
    onsubmit: (e) => {
      e.preventDefault();
      const v = formData(e.target);
      act('Secret created.', () => api('POST', base, { body: v.name ? { name: v.name } : {} }));
    },
  }, h('h2', {}, 'Create a signing secret'),
  h('p', {}, `${live} of 2 live secrets in use.`),
  field('Secret name (optional)', h('input', { name: 'name', autocomplete: 'off' })),
  h('button', { type: 'submit', disabled: live >= 2 }, 'Create secret'),
  live >= 2 ? h('p', { class: 'hint' }, 'Two secrets are live: deactivate the old one before creating another.') : null);
  return h('div', { id: 'secrets-tab' }, err,
    h('div', { class: 'card explain' }, h('h2', {}, 'Rotating a signing secret'),
      h('ol', {},
        h('li', {}, 'Create a second secret (at most two are live at a time).'),
        h('li', {}, 'Give it to the client and let it sign with the new secret; keygate accepts both meanwhile.'),
        h('li', {}, 'When "last used" of the old secret stops moving, deactivate it. Delete it once you are sure.'))),
    table('Signing secrets', ['Name', 'Id', 'Status', 'Created', 'Last used', 'Actions'], rows, 'This user has no signing secrets.'),
    create);
}
