// The daemon page: what `stigmer status` shows, from /api/status every two
// seconds (the backend too: in the cluster mode, where this daemon's
// replica stands against etcd), and a small chart of the commit and
// broadcast p99 latencies (an SVG built with DOM APIs).
import { el, nav } from '/assets/common.js';

document.getElementById('nav').append(nav('/daemon'));
const FIELDS = [
  ['daemonVersion', 'version'], ['uptimeSeconds', 'uptime (s)'], ['socket', 'socket'],
  ['database', 'database'], ['durability', 'durability'], ['revision', 'revision'],
  ['connections', 'connections'], ['subscriptions', 'subscriptions'],
  ['sessionWatches', 'session watches'], ['allWatches', 'all-executions watches'],
  ['committedChanges', 'committed changes'], ['commitBatches', 'commit batches'],
  ['commitLatencyP50Us', 'commit p50 (µs)'], ['commitLatencyP99Us', 'commit p99 (µs)'],
  ['broadcastLatencyP50Us', 'broadcast p50 (µs)'], ['broadcastLatencyP99Us', 'broadcast p99 (µs)'],
  ['resyncs', 'resyncs'], ['subscriberOverflows', 'subscriber overflows'],
  ['slowConsumerDisconnects', 'slow-consumer disconnects'], ['refusedWrites', 'refused writes'],
];
// The backend's rows go right after this field's.
const BACKEND_AFTER = 'revision';
const history = [];

/** A revision from the status JSON (uint64: a decimal string), exact. */
function revision(v) {
  return /^[0-9]+$/.test(String(v ?? '')) ? BigInt(v) : 0n;
}

/**
 * The backend's rows, as `stigmer status` prints them: `sqlite` alone, or
 * in the cluster mode (`--etcd`) the replica's applied revision, the
 * newest etcd revision the daemon heard of, and the lag between them.
 */
function backend(s) {
  if (s.backend !== 'etcd') return [['backend', s.backend || 'sqlite']];
  const applied = revision(s.replicaAppliedRevision);
  const heard = revision(s.etcdRevision);
  return [
    ['backend', 'etcd (cluster mode)'],
    ['replica applied revision', applied],
    ['etcd revision', heard],
    ['replica lag (revisions)', heard > applied ? heard - applied : 0n],
  ];
}
const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs) {
  const n = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  return n;
}

function chart() {
  const w = 600, h = 120;
  const max = Math.max(1, ...history.flatMap((p) => [p.commit, p.broadcast]));
  const line = (key, cls) => svg('polyline', {
    class: cls,
    points: history.map((p, i) => `${(i / 59) * w},${h - (p[key] / max) * (h - 10)}`).join(' '),
  });
  const root = svg('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': 'latency chart' });
  root.append(line('commit', 'line-commit'), line('broadcast', 'line-broadcast'));
  const label = svg('text', { x: 4, y: 12, class: 'chart-label' });
  label.textContent = `max ${Math.round(max)} µs · commit (blue), broadcast (orange)`;
  root.append(label);
  document.getElementById('chart').replaceChildren(root);
}

async function refresh() {
  const conn = document.getElementById('conn');
  try {
    const r = await fetch('/api/status');
    const s = await r.json();
    if (!r.ok) throw new Error(s.error || r.status);
    conn.textContent = 'live';
    conn.className = 'conn live';
    const rejected = Object.entries(s.rejectedConnections || {}).map(([k, v]) => `${k}: ${v}`).join(', ') || '0';
    const rows = FIELDS.flatMap(([k, label]) =>
      [[label, s[k] ?? 0], ...(k === BACKEND_AFTER ? backend(s) : [])]);
    rows.push(['refused connections', rejected]);
    document.getElementById('status').replaceChildren(
      ...rows.flatMap(([label, v]) => [el('dt', {}, label), el('dd', {}, String(v))]));
    history.push({ commit: Number(s.commitLatencyP99Us || 0), broadcast: Number(s.broadcastLatencyP99Us || 0) });
    if (history.length > 60) history.shift();
    chart();
  } catch (e) {
    conn.textContent = `unreachable: ${e.message}`;
    conn.className = 'conn down';
  }
}
refresh();
setInterval(refresh, 2000);
