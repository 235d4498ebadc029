// Jobs: the programs submitted to the head (rayo job submit), with their
// output, and every driver that connected, newest first.
import { el, table, badge, mono, fmtTime, duration, warnings, getJSON, fetchAPI } from './util.js';

export function render(page) {
  const subs = el('div', { id: 'submissions' });
  const body = el('div');
  const output = el('div', { id: 'submission-output' });
  page.root.append(el('h2', { text: 'Jobs' }), subs, output, el('h3', { text: 'Drivers' }), body);

  page.every('jobs', 2000, async () => {
    const list = await page.json('jobs', { limit: 1000 });
    body.replaceChildren(...warnings(list), table([
      { title: 'Job', cell: (j) => mono(j.job_id, 'driver at ' + (j.driver_address || '?')) },
      { title: 'Status', cell: (j) => badge(j.status) },
      { title: 'Entrypoint', cls: 'wrap', cell: (j) => mono(j.entrypoint) },
      { title: 'Message', cls: 'wrap', cell: (j) => j.message || '' },
      { title: 'Submission', cell: (j) => (j.submission_id ? mono(j.submission_id) : '—') },
      { title: 'Node', cell: (j) => mono(j.node_id) },
      { title: 'Started', cell: (j) => fmtTime(j.start_time_ms) },
      { title: 'Ended', cell: (j) => fmtTime(j.end_time_ms) },
      { title: 'Duration', cell: (j) => duration(j.start_time_ms, j.end_time_ms) },
    ], list.result, { empty: 'No jobs.' }));
  });

  // Only a head runs submissions: elsewhere the section stays away.
  page.every('submissions', 2000, async () => {
    const list = await getJSON('/api/jobs/', page.signal);
    if (!list.enabled) { subs.replaceChildren(); return; }
    subs.replaceChildren(el('h3', { text: 'Submitted' }), table([
      { title: 'Submission', cell: (s) => el('a', { href: '#', class: 'mono', text: s.submission_id,
        onclick: (e) => { e.preventDefault(); page.run('submission-output', () => showOutput(page, output, s.submission_id)); } }) },
      { title: 'Status', cell: (s) => badge(s.status) },
      { title: 'Entrypoint', cls: 'wrap', cell: (s) => mono(s.entrypoint) },
      { title: 'Exit', cell: (s) => (s.exit_code === null || s.exit_code === undefined ? '—' : String(s.exit_code)) },
      { title: 'Message', cls: 'wrap', cell: (s) => s.message || '' },
      { title: 'Started', cell: (s) => fmtTime(s.start_time_ms) },
      { title: 'Duration', cell: (s) => duration(s.start_time_ms, s.end_time_ms) },
    ], list.result || [], { empty: 'Nothing submitted: rayo job submit -- PROGRAM runs one here.' }));
  });
}

// showOutput fills the panel with a submission's output so far.
async function showOutput(page, panel, id) {
  const resp = await fetchAPI('/api/jobs/' + encodeURIComponent(id) + '/logs', page.signal);
  const text = await resp.text();
  const close = el('button', { type: 'button', text: 'Close', onclick: () => panel.replaceChildren() });
  panel.replaceChildren(el('h3', {}, 'Output of ', mono(id), ' ', close),
    el('pre', { class: 'log', id: 'submission-log', text: text || '(no output yet)' }));
}
