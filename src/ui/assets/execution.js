// The execution page: the transcript and the rest of one execution, live,
// from /api/executions/ID/events (SSE). `state` renders everything; `patch`
// appends text to the messages it names (only the new text is rendered),
// puts a tool call into a message by id (only that call is re-rendered)
// and re-renders the rest when it carries `meta`. Agent output is
// untrusted: it is shown with textContent and the safe Markdown subset
// (markdown.js) only.
import { el, phaseBadge, phaseName, isFinal, stamp, utf8Length, copy, nav } from '/assets/common.js';
import { StreamingMarkdown } from '/assets/markdown.js';

document.getElementById('nav').append(nav(''));
const id = decodeURIComponent(location.pathname.split('/').pop());
const $ = (x) => document.getElementById(x);
const transcript = $('transcript');
const conn = $('conn');
const actionStatus = $('action-status');
$('title').textContent = id;
document.title = `stigmer: ${id}`;

/** Message views, in order: {type, bytes, body: StreamingMarkdown, node, calls: [{id, node}]}. */
let views = [];
let execution = null;
const phaseLog = [];

function roleOf(type) {
  return { MESSAGE_HUMAN: 'human', MESSAGE_AI: 'ai', MESSAGE_TOOL: 'tool', MESSAGE_SYSTEM: 'system' }[type] || 'ai';
}

function toolCall(call) {
  const status = (call.status || 'TOOL_CALL_STATUS_UNSPECIFIED').replace(/^TOOL_CALL_/, '').toLowerCase();
  let duration = '';
  if (call.startedAt && call.completedAt) {
    const ms = new Date(call.completedAt) - new Date(call.startedAt);
    if (!Number.isNaN(ms)) duration = ` · ${(ms / 1000).toFixed(1)}s`;
  }
  return el('details', { class: 'tool' },
    el('summary', {}, el('code', {}, call.name || '(tool)'), ` ${status}${duration}`),
    el('div', { class: 'muted' }, 'arguments'),
    el('pre', {}, JSON.stringify(call.args ?? {}, null, 2)),
    el('div', { class: 'muted' }, 'result'),
    el('pre', {}, call.result || ''),
    call.error ? el('p', { class: 'error' }, call.error) : null);
}

function messageView(m) {
  const type = m.type || 'MESSAGE_AI';
  const node = el('div', { class: `msg msg-${roleOf(type)}` }, el('div', { class: 'role' }, roleOf(type)));
  const bodyNode = el('div', { class: 'body' });
  node.append(bodyNode);
  const body = new StreamingMarkdown(bodyNode);
  const content = m.content || '';
  body.append(content);
  const calls = (m.toolCalls || []).map((call) => ({ id: call.id || '', node: toolCall(call) }));
  for (const c of calls) node.append(c.node);
  return { type, bytes: utf8Length(content), body, node, calls };
}

/** put_message_tool_call: replaces the first tool call with this id, else appends it. */
function putToolCall(view, call) {
  const id = call.id || '';
  const node = toolCall(call);
  const existing = view.calls.find((c) => c.id === id);
  if (existing) {
    existing.node.replaceWith(node);
    existing.node = node;
  } else {
    view.calls.push({ id, node });
    view.node.append(node);
  }
}

function setMessages(messages) {
  views = (messages || []).map(messageView);
  transcript.replaceChildren(...views.map((v) => v.node));
}

function putMessage(index, m) {
  const view = messageView(m || {});
  if (index < views.length) {
    views[index].node.replaceWith(view.node);
    views[index] = view;
  } else {
    views.push(view);
    transcript.append(view.node);
  }
}

function renderMeta(e) {
  execution = e;
  const spec = e.spec || {};
  const status = e.status || {};
  const phase = status.phase || 'EXECUTION_PHASE_UNSPECIFIED';
  $('phase').replaceChildren(phaseBadge(phase));
  $('cancel').disabled = isFinal(phase);
  if (!phaseLog.length || phaseLog[phaseLog.length - 1].phase !== phase) {
    phaseLog.push({ phase, at: status.audit?.statusAudit?.updatedAt });
  }
  const facts = [
    ['agent', spec.agentId], ['session', spec.sessionId],
    ['created', stamp(status.audit?.specAudit?.createdAt)],
    ['updated', stamp(status.audit?.statusAudit?.updatedAt)],
  ];
  $('facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v || '-')]));
  $('prompt').replaceChildren(el('div', { class: 'role' }, 'prompt'), el('div', { class: 'body' }, spec.message || ''));
  const err = $('error');
  err.hidden = !status.error;
  err.textContent = status.error || '';
  const timeline = [
    ['started', status.startedAt],
    ...phaseLog.map((p) => [phaseName(p.phase), p.at]),
    ['completed', status.completedAt],
  ].filter(([, t]) => t);
  $('timeline').replaceChildren(...timeline.map(([k, t]) => el('li', {}, el('strong', {}, k), ` ${stamp(t)}`)));
  const todos = Object.entries(status.todos || {});
  $('todos').replaceChildren(...todos.map(([key, t]) => {
    const st = (t.status || 'TODO_PENDING').replace(/^TODO_/, '').toLowerCase().replace(/_/g, '-');
    return el('li', { class: `todo todo-${st}` }, el('span', { class: 'tick' }, st === 'completed' ? '☑' : '☐'), ` ${t.content || key}`, el('span', { class: 'muted' }, ` ${st}`));
  }));
  $('subagents').replaceChildren(...(status.subAgentExecutions || []).map((s) => {
    const st = (s.status || 'SUB_AGENT_PENDING').replace(/^SUB_AGENT_/, '').toLowerCase();
    return el('li', {}, el('strong', {}, s.name || s.id || 'sub-agent'), ` ${st}`, s.error ? el('span', { class: 'error' }, ` ${s.error}`) : null);
  }));
  $('tools').replaceChildren(...(status.toolCalls || []).map(toolCall));
}

function showUpdated(ms) {
  if (ms === null || ms === undefined || !execution) return;
  const dd = $('facts').querySelectorAll('dd')[3];
  if (dd) dd.textContent = new Date(ms).toLocaleString();
}

let events = null;
let startedOver = false;
function open() {
  events = new EventSource(`/api/executions/${encodeURIComponent(id)}/events`);
  events.addEventListener('open', () => { conn.textContent = 'live'; conn.className = 'conn live'; });
  events.addEventListener('error', () => {
    if (events.readyState !== EventSource.CLOSED) { conn.textContent = 'reconnecting…'; conn.className = 'conn down'; }
  });
  events.addEventListener('state', (e) => {
    const x = JSON.parse(e.data);
    renderMeta(x);
    setMessages(x.status?.messages);
  });
  events.addEventListener('patch', (e) => {
    const p = JSON.parse(e.data);
    for (const op of p.ops) {
      if (op.append) {
        const a = op.append;
        if (a.index === views.length) putMessage(a.index, { type: a.type === 'MESSAGE_TYPE_UNSPECIFIED' ? 'MESSAGE_AI' : a.type });
        const view = views[a.index];
        if (!view || view.bytes !== a.offset) {
          // Not where this page is: start over with the whole state
          // rather than show a gap or a duplicate.
          resync();
          return;
        }
        view.body.append(a.text);
        view.bytes += utf8Length(a.text);
      } else if (op.message) {
        putMessage(op.message.index, op.message.message);
      } else if (op.messages) {
        setMessages(op.messages);
      } else if (op.toolCall) {
        const view = views[op.toolCall.index];
        if (!view) {
          resync();
          return;
        }
        putToolCall(view, op.toolCall.toolCall || {});
      }
    }
    if (p.meta) renderMeta(p.meta);
    else showUpdated(p.updated);
  });
  events.addEventListener('end', (e) => {
    const x = JSON.parse(e.data);
    events.close();
    conn.textContent = `ended (${x.reason})`;
    conn.className = 'conn';
    $('cancel').disabled = true;
  });
  events.addEventListener('failure', (e) => {
    const x = JSON.parse(e.data);
    events.close();
    if (x.code === 'OUT_OF_RANGE' && !startedOver) {
      // The revision this page resumed from is unknown to the daemon (a
      // new database?): start over with the whole state, once.
      startedOver = true;
      open();
      return;
    }
    conn.textContent = 'stream failed';
    conn.className = 'conn down';
    const err = $('error');
    err.hidden = false;
    err.textContent = x.message;
  });
}

function resync() {
  events.close();
  open();
}

$('cancel').addEventListener('click', async () => {
  $('cancel').disabled = true;
  actionStatus.textContent = 'cancelling…';
  const r = await fetch(`/api/executions/${encodeURIComponent(id)}/cancel`, { method: 'POST', credentials: 'same-origin' });
  const body = await r.json().catch(() => ({}));
  actionStatus.textContent = r.ok ? 'cancelled' : `not cancelled: ${body.error || r.status}`;
  if (!r.ok && !isFinal(execution?.status?.phase)) $('cancel').disabled = false;
});
$('copy-id').addEventListener('click', () => copy(id, actionStatus));
$('copy-cmd').addEventListener('click', async () => {
  const info = await (await fetch('/api/info')).json().catch(() => ({}));
  const socket = info.socket ? ` --socket '${String(info.socket).replaceAll("'", "'\\''")}'` : '';
  copy(`stigmer${socket} executions subscribe '${id.replaceAll("'", "'\\''")}'`, actionStatus);
});

open();
