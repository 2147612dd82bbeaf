// Small DOM helpers. Text always goes in through textContent, never as HTML.

/**
 * h builds an element: h('button', { class: 'x', onclick: fn }, 'text', child).
 * Attributes whose value is false, null or undefined are left out; true
 * sets an empty attribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElementNS(tag === 'svg' || attrs.svg ? 'http://www.w3.org/2000/svg' : 'http://www.w3.org/1999/xhtml', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'svg' || v === false || v === null || v === undefined) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** s builds an SVG element. */
export function s(tag, attrs = {}, ...children) { return h(tag, { ...attrs, svg: true }, ...children); }

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** fmtTime shows an RFC 3339 time in the browser's locale, or a dash. */
export function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  return d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' });
}

/** timeEl is a <time> with the full timestamp as machine value. */
export function timeEl(t) {
  return t ? h('time', { datetime: t, title: t }, fmtTime(t)) : '—';
}

/** badge shows a status word with a colour that is never the only cue. */
export function badge(status) {
  return h('span', { class: `badge badge-${String(status || '').toLowerCase()}` }, status || '—');
}

/** field is a labelled form control; returns the wrapper. */
let fieldSeq = 0;
export function field(label, control, hint) {
  const id = control.id || `f${++fieldSeq}`;
  control.id = id;
  const parts = [h('label', { for: id }, label), control];
  if (hint) {
    const hid = `${id}-hint`;
    control.setAttribute('aria-describedby', hid);
    parts.push(h('p', { class: 'hint', id: hid }, hint));
  }
  return h('div', { class: 'field' }, parts);
}

/** select builds a <select> from [value, label] pairs. */
export function select(name, options, value) {
  return h('select', { name }, options.map(([v, l]) => h('option', { value: v, selected: v === value }, l)));
}

/**
 * announce puts a short message in the live region. It belongs to the
 * screen it is about (forHash, default: the current one): going to any
 * other screen clears it (leaveAnnouncements).
 */
let announceTimer;
let showTimer;
let announcedFor = '';
export function announce(msg, forHash = location.hash) {
  const el = document.getElementById('status');
  el.textContent = '';
  clearTimeout(announceTimer);
  clearTimeout(showTimer);
  announcedFor = forHash;
  showTimer = setTimeout(() => { el.textContent = msg; }, 30);
  announceTimer = setTimeout(() => { el.textContent = ''; }, 6000);
}

/** leaveAnnouncements clears a message that belongs to another screen than hash. */
export function leaveAnnouncements(hash) {
  if (announcedFor === hash) return;
  clearTimeout(announceTimer);
  clearTimeout(showTimer);
  announcedFor = '';
  document.getElementById('status').textContent = '';
}

/**
 * problemView renders an API error as a person would read it: the title,
 * the detail, the fields at fault, and for 412 a button that reloads.
 */
export function problemView(err, onReload) {
  const p = (err && err.problem) || { title: String(err && err.message ? err.message : err) };
  const box = h('div', { class: 'problem', role: 'alert' },
    h('p', { class: 'problem-title' }, p.title || 'Something went wrong', err && err.status ? ` (${err.status})` : ''),
    p.detail && p.detail !== p.title ? h('p', {}, p.detail) : null,
    Array.isArray(p.errors) && p.errors.length
      ? h('ul', {}, p.errors.map((e) => h('li', {}, e.field ? h('strong', {}, `${e.field}: `) : null, e.message || '')))
      : null);
  if (err && err.status === 412) {
    box.append(h('p', {}, 'Someone else changed this while you were looking at it. Reload to see the current version, then make your change again.'),
      h('button', { type: 'button', onclick: () => onReload && onReload() }, 'Reload'));
  }
  if (err && err.status === 403 && !String(p.type || '').endsWith('/console-not-allowed')) {
    box.append(h('p', {}, 'Your key is not allowed to do this (a superadmin or an admin of the tenant is).'));
  }
  return box;
}

/** errorSlot is an element that shows one problem at a time. */
export function errorSlot(onReload) {
  const el = h('div', { class: 'error-slot' });
  el.show = (err) => { el.replaceChildren(problemView(err, onReload)); };
  el.clear = () => el.replaceChildren();
  return el;
}

/**
 * onceBox shows a credential that will not be shown again, with a copy
 * button; the warning is text, not only colour.
 */
export function onceBox(label, value, extra) {
  const input = h('input', { type: 'text', readonly: true, value, class: 'mono once-value', 'aria-label': label, spellcheck: 'false' });
  const copied = h('span', { class: 'copied', role: 'status' });
  const copy = h('button', {
    type: 'button',
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(value);
        copied.textContent = 'Copied.';
      } catch {
        input.select();
        copied.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
      }
    },
  }, 'Copy');
  return h('section', { class: 'once', 'aria-labelledby': 'once-h' },
    h('h2', { id: 'once-h' }, label),
    h('p', { class: 'warn' }, h('strong', {}, 'Copy it now: you will not see it again. '), 'keygate stores only a hash of it.'),
    h('div', { class: 'row' }, input, copy, copied),
    extra || null);
}

/** pager renders "Page x of y" with previous/next links. */
export function pager(page, size, total, hrefFor) {
  const pages = Math.max(1, Math.ceil(total / size));
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    page > 1 ? h('a', { href: hrefFor(page - 1), rel: 'prev' }, '← Previous') : h('span', { class: 'disabled' }, '← Previous'),
    h('span', {}, `Page ${page} of ${pages} · ${total} in all`),
    page < pages ? h('a', { href: hrefFor(page + 1), rel: 'next' }, 'Next →') : h('span', { class: 'disabled' }, 'Next →'));
}

/** table builds a data table with a caption; rows are arrays of cells. */
export function table(caption, headers, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, i) => (i === 0 ? h('th', { scope: 'row' }, c) : h('td', {}, c))))))));
}

/** formData returns a form's named values as an object of strings. */
export function formData(form) {
  return Object.fromEntries(new FormData(form).entries());
}

/** toISOEnd turns a yyyy-mm-dd date into the end of that day (UTC). */
export function dateToISO(d) {
  return d ? new Date(`${d}T23:59:59Z`).toISOString() : undefined;
}

/** dateInputValue is the yyyy-mm-dd of an RFC 3339 time. */
export function dateInputValue(t) {
  return t ? String(t).slice(0, 10) : '';
}
