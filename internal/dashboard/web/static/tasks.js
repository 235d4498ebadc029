// Tasks: one row per attempt, filtered and paged by the server; a failed
// attempt shows its error and stack; a task's ID opens every attempt.
import { el, table, badge, mono, short, logsLink, fmtTime, duration, warnings } from './util.js';

const STATES = ['', 'PENDING_ARGS_AVAIL', 'PENDING_NODE_ASSIGNMENT', 'SUBMITTED_TO_WORKER',
  'RUNNING', 'FINISHED', 'FAILED'];
// Each control maps to one field of the task record.
const FILTERS = [['state', 'State'], ['name', 'Name'], ['job_id', 'Job'], ['node_id', 'Node']];

export function render(page) {
  const inputs = {};
  for (const [key] of FILTERS) {
    inputs[key] = key === 'state'
      ? el('select', { id: 'filter-state' }, STATES.map((s) => el('option', { value: s, text: s || 'any' })))
      : el('input', { id: 'filter-' + key, type: 'search', placeholder: 'any', size: 14 });
    inputs[key].value = page.params.get(key) || '';
    if (key === 'state' && !STATES.includes(inputs.state.value)) inputs.state.value = '';
  }
  const limit = el('select', { id: 'page-size' }, [25, 100, 500].map((n) => el('option', { value: n, text: n + ' per page' })));
  limit.value = '100';
  let offset = 0;

  const prev = el('button', { id: 'newer', type: 'button', text: '‹ Newer' });
  const next = el('button', { id: 'older', type: 'button', text: 'Older ›' });
  const range = el('span', { id: 'range', class: 'muted' });
  const detail = el('div', { id: 'task-detail' });
  const body = el('div');
  const open = new Set(); // attempts whose error is expanded, across refreshes

  page.root.append(el('h2', { text: 'Tasks' }),
    el('div', { class: 'controls' },
      FILTERS.map(([key, label]) => el('label', {}, label, inputs[key])),
      el('label', {}, 'Page size', limit)),
    detail, el('div', { class: 'pager' }, prev, next, range), body);

  const load = async () => {
    const filter = FILTERS.filter(([k]) => inputs[k].value.trim())
      .map(([k]) => `${k}=${inputs[k].value.trim()}`);
    const list = await page.json('tasks', { filter, limit: limit.value, offset });
    const n = list.result.length;
    range.textContent = n ? `${offset + 1}–${offset + n} of ${list.num_filtered} matching (${list.total} held` +
      (list.dropped ? `, ${list.dropped} dropped)` : ')') : `none of ${list.total} match`;
    prev.disabled = offset === 0;
    next.disabled = offset + n >= list.num_filtered;
    body.replaceChildren(...warnings(list), table([
      { title: 'Task', cell: (t) => el('a', { href: '#', class: 'mono', title: t.task_id, text: t.task_id,
        onclick: (e) => { e.preventDefault(); page.run('task', () => showTask(page, detail, t.task_id)); } }) },
      { title: 'Try', cell: (t) => String(t.attempt_number ?? 0) },
      { title: 'Name', cls: 'wrap', cell: (t) => t.name || '—' },
      { title: 'State', cell: (t) => badge(t.state) },
      { title: 'Type', cell: (t) => t.type || '—' },
      { title: 'Job', cell: (t) => mono(t.job_id) },
      { title: 'Node', cell: (t) => mono(t.node_id) },
      { title: 'PID', cell: (t) => logsLink(t.node_id, t.worker_pid) },
      { title: 'Created', cell: (t) => fmtTime(t.creation_time_ms) },
      { title: 'Duration', cell: (t) => duration(t.start_time_ms, t.end_time_ms) },
    ], list.result, {
      empty: 'No tasks match.',
      after: (t) => (t.state === 'FAILED' ? el('tr', { class: 'detail' },
        el('td', { colspan: 10 }, errorBox(t, open))) : null),
    }));
  };

  const reload = () => {
    const q = new URLSearchParams();
    for (const [k] of FILTERS) if (inputs[k].value.trim()) q.set(k, inputs[k].value.trim());
    history.replaceState(null, '', '#/tasks' + (q.size ? '?' + q : ''));
    page.run('tasks', load);
  };
  for (const [k] of FILTERS) inputs[k].addEventListener('change', () => { offset = 0; reload(); });
  limit.addEventListener('change', () => { offset = 0; reload(); });
  prev.addEventListener('click', () => { offset = Math.max(0, offset - Number(limit.value)); reload(); });
  next.addEventListener('click', () => { offset += Number(limit.value); reload(); });
  page.every('tasks', 2000, load);
}

// errorBox shows a failed attempt's error: its first line, expanding to
// the whole message with the remote stack.
function errorBox(t, open) {
  const key = t.task_id + ':' + t.attempt_number;
  const msg = t.error_message || '(no error message)';
  const box = el('details', { class: 'error', open: open.has(key) },
    el('summary', { text: (t.error_type && !msg.startsWith(t.error_type) ? t.error_type + ': ' : '') +
      msg.split('\n', 1)[0] }),
    el('pre', { text: msg }));
  box.addEventListener('toggle', () => (box.open ? open.add(key) : open.delete(key)));
  return box;
}

// showTask fills the panel with every attempt of one task.
async function showTask(page, panel, id) {
  const res = await page.json('tasks/' + encodeURIComponent(id));
  const close = el('button', { type: 'button', text: 'Close', onclick: () => panel.replaceChildren() });
  panel.replaceChildren(el('h3', {}, 'Task ', mono(id), ' ', close),
    table([
      { title: 'Try', cell: (t) => String(t.attempt_number ?? 0) },
      { title: 'Name', cell: (t) => t.name || '—' },
      { title: 'State', cell: (t) => badge(t.state) },
      { title: 'Worker', cell: (t) => [mono(short(t.worker_id), t.worker_id), ' pid ', logsLink(t.node_id, t.worker_pid)] },
      { title: 'Resources', cell: (t) => kv(t.required_resources) },
      { title: 'States', cls: 'wrap', cell: (t) => Object.entries(t.state_times_ms || {})
        .sort((a, b) => a[1] - b[1]).map(([s, ms]) => el('div', { text: `${s} ${fmtTime(ms)}` })) },
      { title: 'Parent', cell: (t) => mono(t.parent_task_id) },
      { title: 'Error', cls: 'wrap', cell: (t) => (t.error_message ? el('pre', { text: t.error_message }) : '') },
    ], res.result || [], { empty: 'No attempts.' }));
}

function kv(obj) {
  const s = Object.entries(obj || {}).map(([k, v]) => `${k}: ${v}`).join(', ');
  return s || '—';
}
