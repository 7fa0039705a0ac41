// Shared helpers of the dashboard's pages. Every node is built with DOM
// APIs (createElement, textContent): no HTML string is ever parsed, so
// nothing an agent wrote can become markup.

/** An element: `el('a', {href: '/x', class: 'c'}, 'text', child)`. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    node.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return node;
}

const PHASES = {
  EXECUTION_PENDING: 'pending',
  EXECUTION_IN_PROGRESS: 'in-progress',
  EXECUTION_COMPLETED: 'completed',
  EXECUTION_FAILED: 'failed',
  EXECUTION_CANCELLED: 'cancelled',
  EXECUTION_WAITING_FOR_APPROVAL: 'waiting-for-approval',
  EXECUTION_PAUSED: 'paused',
  EXECUTION_TERMINATED: 'terminated',
};

/** The CLI's short name of a phase (`in-progress`). */
export function phaseName(p) {
  return PHASES[p] || 'unspecified';
}

/** A coloured badge for a phase. */
export function phaseBadge(p) {
  const name = phaseName(p);
  return el('span', { class: `phase phase-${name}`, 'data-phase': name }, name);
}

/** Whether a phase is final. */
export function isFinal(p) {
  return ['EXECUTION_COMPLETED', 'EXECUTION_FAILED', 'EXECUTION_CANCELLED', 'EXECUTION_TERMINATED'].includes(p);
}

/** A short age, as the CLI prints it: 42s, 5m12s, 3h5m, 12d. */
export function age(ms) {
  if (ms === null || ms === undefined) return '-';
  const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 36000) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** An RFC 3339 stamp (or a Timestamp's JSON) as local time, or '-'. */
export function stamp(t) {
  if (!t) return '-';
  const d = new Date(t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString();
}

/** The UTF-8 length of a string (the daemon's offsets count bytes). */
export function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) { n += 4; i++; }
    else n += 3;
  }
  return n;
}

/** Copies text, or shows it for copying by hand when the clipboard is closed. */
export async function copy(text, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = 'copied';
  } catch {
    status.textContent = text;
  }
}

/** The top bar shared by the pages. */
export function nav(current) {
  const link = (href, label) =>
    el('a', { href, class: current === href ? 'current' : undefined }, label);
  return el('nav', {}, el('strong', {}, 'stigmer'), link('/', 'Executions'), link('/daemon', 'Daemon'));
}
