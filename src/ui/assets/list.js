// The executions page: a live table fed by /api/watch (SSE). `reset`
// replaces every row, `row` puts one, `gone` removes one; the browser's
// EventSource resumes with Last-Event-ID after a blip (docs/OPERATIONS.md).
import { el, phaseBadge, phaseName, age, nav } from '/assets/common.js';

document.getElementById('nav').append(nav('/'));
const rows = new Map();
const tbody = document.getElementById('rows');
const conn = document.getElementById('conn');
const filters = {
  session: document.getElementById('f-session'),
  agent: document.getElementById('f-agent'),
  phase: document.getElementById('f-phase'),
};

// Filters live in the address (?session=&agent=&phase=), so a view can be shared.
const params = new URLSearchParams(location.search);
for (const [k, input] of Object.entries(filters)) input.value = params.get(k) || '';

function visible(r) {
  const s = filters.session.value.trim();
  const a = filters.agent.value.trim();
  const p = filters.phase.value;
  return (!s || r.session === s) && (!a || r.agent === a) && (!p || phaseName(r.phase) === p);
}

function render() {
  const shown = [...rows.values()]
    .filter(visible)
    .sort((x, y) => (y.created ?? 0) - (x.created ?? 0) || (x.id < y.id ? 1 : -1));
  tbody.replaceChildren(
    ...shown.map((r) =>
      el('tr', { 'data-id': r.id },
        el('td', {}, el('a', { href: `/executions/${encodeURIComponent(r.id)}` }, r.id)),
        el('td', {}, r.agent || ''),
        el('td', {}, r.session || ''),
        el('td', {}, phaseBadge(r.phase)),
        el('td', { class: 'num' }, age(r.created)),
        el('td', { class: 'num' }, age(r.updated)),
        el('td', { class: 'latest' }, r.text || ''))),
  );
  document.getElementById('empty').hidden = shown.length > 0;
}

let scheduled = false;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => { scheduled = false; render(); });
}

for (const input of Object.values(filters)) {
  input.addEventListener('input', () => {
    const q = new URLSearchParams();
    for (const [k, i] of Object.entries(filters)) if (i.value) q.set(k, i.value);
    history.replaceState(null, '', q.toString() ? `?${q}` : location.pathname);
    schedule();
  });
}
document.getElementById('filters').addEventListener('submit', (e) => e.preventDefault());

const events = new EventSource('/api/watch');
events.addEventListener('open', () => { conn.textContent = 'live'; conn.className = 'conn live'; });
events.addEventListener('error', () => { conn.textContent = 'reconnecting…'; conn.className = 'conn down'; });
events.addEventListener('reset', (e) => {
  const data = JSON.parse(e.data);
  rows.clear();
  for (const r of data.rows) rows.set(r.id, r);
  if (data.notice) conn.textContent = data.notice;
  schedule();
});
events.addEventListener('row', (e) => {
  const r = JSON.parse(e.data);
  rows.set(r.id, r);
  schedule();
});
events.addEventListener('gone', (e) => {
  rows.delete(JSON.parse(e.data).id);
  schedule();
});
events.addEventListener('notice', (e) => {
  const text = JSON.parse(e.data).text;
  conn.textContent = text || 'live';
  conn.className = text ? 'conn down' : 'conn live';
});
// Ages tick even when nothing changes.
setInterval(schedule, 1000);
