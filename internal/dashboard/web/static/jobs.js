// Jobs: every driver that connected, newest first.
import { el, table, badge, mono, fmtTime, duration, warnings } from './util.js';

export function render(page) {
  const body = el('div');
  page.root.append(el('h2', { text: 'Jobs' }), body);
  page.every('jobs', 2000, async () => {
    const list = await page.json('jobs', { limit: 1000 });
    body.replaceChildren(...warnings(list), table([
      { title: 'Job', cell: (j) => mono(j.job_id) },
      { title: 'Status', cell: (j) => badge(j.status) },
      { title: 'Entrypoint', cls: 'wrap', cell: (j) => mono(j.entrypoint) },
      { title: 'Node', cell: (j) => mono(j.node_id) },
      { title: 'Driver', cell: (j) => j.driver_address || '—' },
      { title: 'Started', cell: (j) => fmtTime(j.start_time_ms) },
      { title: 'Ended', cell: (j) => fmtTime(j.end_time_ms) },
      { title: 'Duration', cell: (j) => duration(j.start_time_ms, j.end_time_ms) },
    ], list.result, { empty: 'No jobs.' }));
  });
}
