// keygate console: a hash router over the screens. Each screen is a
// function (params) => Promise<Node>, rendered into <main>.
import { session, onUnauthorized, signIn, signOut, can } from './api.js';
import { h, problemView, field, announce, leaveAnnouncements } from './ui.js';
import { usersScreen, newUserScreen, userScreen } from './users.js';
import { tenantsScreen, permissionsScreen } from './tenants.js';
import { activityScreen } from './audit.js';
import { overviewScreen, topUsersScreen } from './overview.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signout = document.getElementById('signout');
const whoami = document.getElementById('whoami');

const routes = [
  [/^#\/overview\/users(?:\?.*)?$/, (m, q) => topUsersScreen(q)],
  [/^#\/overview(?:\?.*)?$/, (m, q) => overviewScreen(q)],
  [/^#\/users\/new$/, () => newUserScreen()],
  [/^#\/users\/([^/?]+)(?:\/([a-z]+))?(?:\?.*)?$/, (m, q) => userScreen(decodeURIComponent(m[1]), m[2] || 'overview', q)],
  [/^#\/users(?:\?.*)?$/, (m, q) => usersScreen(q)],
  [/^#\/tenants\/([^/?]+)(?:\?.*)?$/, (m, q) => permissionsScreen(decodeURIComponent(m[1]), q)],
  [/^#\/tenants(?:\?.*)?$/, (m, q) => tenantsScreen(q)],
  [/^#\/activity(?:\?.*)?$/, (m, q) => activityScreen(q)],
];

/** home is the landing page: the gateway overview for administrators,
 * the users of the tenant (profiles) for everyone else. */
function home() {
  return can.administer() ? '#/overview' : '#/users';
}

/** query returns the URLSearchParams after the '?' of the hash. */
function hashQuery() {
  const i = location.hash.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : location.hash.slice(i + 1));
}

/** chrome shows the navigation and who is signed in, or hides them. */
function chrome(identity) {
  const on = !!identity;
  nav.hidden = !on;
  signout.hidden = !on;
  whoami.hidden = !on;
  if (!on) return;
  for (const li of nav.querySelectorAll('[data-admin]')) li.hidden = !can.administer();
  document.getElementById('nav-me').setAttribute('href', `#/users/${encodeURIComponent(identity.user.id)}`);
  let where;
  if (identity.role && identity.permissionStatus === 'ACTIVE') where = `${identity.role} in ${identity.tenant}`;
  else if (identity.role) where = `${identity.role} in ${identity.tenant} (permission ${identity.permissionStatus})`;
  else where = `no permission in ${identity.tenant}`;
  whoami.textContent = `${identity.user.name} · ${identity.user.superadmin ? 'superadmin · ' : ''}${where}`;
}

let renderSeq = 0;

/** render shows the screen of the current hash (or sign-in). */
export async function render() {
  const seq = ++renderSeq;
  if (!session.get()) {
    chrome(null);
    leaveAnnouncements('#sign-in');
    main.replaceChildren(signInScreen());
    document.title = 'Sign in · keygate console';
    return;
  }
  const identity = session.identity();
  chrome(identity);
  let hash = location.hash;
  if (!hash || hash === '#/' || hash === '#/me') {
    hash = hash === '#/me' ? `#/users/${encodeURIComponent(identity.user.id)}` : home();
    history.replaceState(null, '', hash);
  }
  leaveAnnouncements(hash);
  const section = (hash.match(/^#\/([a-z]+)/) || [])[1] || 'users';
  const mine = hash.startsWith(`#/users/${encodeURIComponent(identity.user.id)}`);
  for (const a of nav.querySelectorAll('a')) {
    const current = mine ? a.dataset.nav === 'me' : a.dataset.nav === section;
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const route = routes.find(([re]) => re.test(hash));
  let node;
  try {
    node = route ? await route[1](hash.match(route[0]), hashQuery()) : h('section', {}, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: home() }, 'Go to the start page')));
  } catch (err) {
    node = h('section', {}, h('h1', {}, 'Could not load this page'), problemView(err, render));
  }
  if (seq !== renderSeq) return; // a newer navigation won
  main.replaceChildren(node);
  main.dataset.rendered = hash; // which screen is on show (for tests and tools)
  const h1 = main.querySelector('h1');
  document.title = `${h1 ? h1.textContent : 'keygate'} · keygate console`;
  if (!main.contains(document.activeElement) || document.activeElement === document.body) main.focus({ preventScroll: true });
}

function signInScreen(message) {
  const input = h('input', { type: 'password', name: 'credential', autocomplete: 'off', required: true, spellcheck: 'false', class: 'mono' });
  const err = h('div', { class: 'error-slot' });
  const form = h('form', {
    class: 'card narrow',
    onsubmit: async (e) => {
      e.preventDefault();
      const cred = input.value.trim();
      err.replaceChildren();
      let identity;
      try {
        identity = await signIn(cred);
      } catch (ex) {
        err.replaceChildren(problemView(ex.status === 401 ? { status: 401, problem: { title: 'That key was not accepted', detail: 'Check that you pasted the whole key (kg_…) or access token, and that it is ACTIVE and not expired.' } } : ex));
        input.focus();
        return;
      }
      input.value = '';
      const next = !location.hash || location.hash === '#/' ? home() : location.hash;
      announce(`Signed in as ${identity.user.name}.`, next);
      if (location.hash !== next) location.hash = next;
      else render();
    },
  },
  h('h1', {}, 'Sign in'),
  message ? h('p', { class: 'notice', role: 'alert' }, message) : null,
  h('p', {}, 'Paste your access key, or an access token from the token endpoint. keygate exchanges it for a console session that lasts an hour (at most as long as the key) and ends when the key is revoked; only that session stays in this browser tab (sessionStorage), never the key. Service and application users cannot sign in here; their keys work against the API.'),
  field('Access key or access token', input, 'For the example set-up: the key printed by "keygate bootstrap".'),
  err,
  h('button', { type: 'submit' }, 'Sign in'));
  return form;
}

signout.addEventListener('click', async () => {
  await signOut();
  announce('Signed out.', '#sign-in');
  history.replaceState(null, '', '#/');
  render();
});

onUnauthorized(() => {
  session.clear();
  chrome(null);
  leaveAnnouncements('#sign-in');
  main.replaceChildren(signInScreen('Your session ended (it expired, or the key it came from was revoked, expired or disabled). Sign in again.'));
});

window.addEventListener('hashchange', render);
render();
