// keygate console: a hash router over the screens. Each screen is a
// function (params) => Promise<Node>, rendered into <main>.
import { api, session, onUnauthorized } from './api.js';
import { h, problemView, field, announce } from './ui.js';
import { usersScreen, newUserScreen, userScreen } from './users.js';
import { tenantsScreen, permissionsScreen } from './tenants.js';
import { activityScreen } from './audit.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signout = document.getElementById('signout');

const routes = [
  [/^#\/users\/new$/, () => newUserScreen()],
  [/^#\/users\/([^/?]+)(?:\/([a-z]+))?(?:\?.*)?$/, (m, q) => userScreen(decodeURIComponent(m[1]), m[2] || 'overview', q)],
  [/^#\/users(?:\?.*)?$/, (m, q) => usersScreen(q)],
  [/^#\/tenants\/([^/?]+)(?:\?.*)?$/, (m, q) => permissionsScreen(decodeURIComponent(m[1]), q)],
  [/^#\/tenants(?:\?.*)?$/, (m, q) => tenantsScreen(q)],
  [/^#\/activity(?:\?.*)?$/, (m, q) => activityScreen(q)],
];

/** query returns the URLSearchParams after the '?' of the hash. */
function hashQuery() {
  const i = location.hash.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : location.hash.slice(i + 1));
}

let renderSeq = 0;

/** render shows the screen of the current hash (or sign-in). */
export async function render() {
  const seq = ++renderSeq;
  if (!session.get()) {
    nav.hidden = true;
    signout.hidden = true;
    main.replaceChildren(signInScreen());
    document.title = 'Sign in · keygate console';
    return;
  }
  nav.hidden = false;
  signout.hidden = false;
  const hash = location.hash || '#/users';
  const section = (hash.match(/^#\/([a-z]+)/) || [])[1] || 'users';
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const route = routes.find(([re]) => re.test(hash));
  let node;
  try {
    node = route ? await route[1](hash.match(route[0]), hashQuery()) : h('section', {}, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/users' }, 'Go to users')));
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
      try {
        await api('GET', '/v1/users', { query: { size: 1 }, credential: cred });
      } catch (ex) {
        err.replaceChildren(problemView(ex.status === 401 ? { status: 401, problem: { title: 'That key was not accepted', detail: 'Check that you pasted the whole admin key (kg_…) or access token, and that it is ACTIVE and not expired.' } } : ex));
        input.focus();
        return;
      }
      session.set(cred);
      input.value = '';
      announce('Signed in.');
      if (!location.hash || location.hash === '#/') location.hash = '#/users';
      else render();
    },
  },
  h('h1', {}, 'Sign in'),
  message ? h('p', { class: 'notice', role: 'alert' }, message) : null,
  h('p', {}, 'Paste an admin key of a superadmin or tenant admin, or an access token from the token endpoint. It stays in this browser tab only (sessionStorage) and is forgotten when you sign out or close the tab.'),
  field('Admin key or access token', input, 'For the example set-up: the key printed by "keygate bootstrap".'),
  err,
  h('button', { type: 'submit' }, 'Sign in'));
  return form;
}

signout.addEventListener('click', () => {
  session.clear();
  announce('Signed out.');
  location.hash = '#/users';
  render();
});

onUnauthorized(() => {
  session.clear();
  nav.hidden = true;
  signout.hidden = true;
  main.replaceChildren(signInScreen('Your key stopped working (revoked, expired or disabled). Sign in again.'));
});

window.addEventListener('hashchange', render);
render();
