// Logs: the last lines a worker wrote, and, with follow on, what it writes
// next, streamed as it comes.
import { el, apiURL, fetchAPI } from './util.js';

const LINES = 1000;

export function render(page) {
  const worker = el('select', { id: 'worker' }, el('option', { value: '', text: 'choose a worker…' }));
  const follow = el('input', { id: 'follow', type: 'checkbox' });
  const refresh = el('button', { type: 'button', text: 'Reload' });
  const status = el('span', { id: 'log-status', class: 'muted' });
  const out = el('pre', { class: 'log', id: 'log' });
  page.root.append(el('h2', { text: 'Logs' }),
    el('div', { class: 'controls' }, el('label', {}, 'Worker', worker),
      el('label', {}, 'Follow', follow), refresh, status), out);

  let stream = null; // the AbortController of the fetch in flight

  const show = () => {
    if (stream) stream.abort();
    const [nodeID, pid] = worker.value ? JSON.parse(worker.value) : [];
    if (!nodeID) { out.replaceChildren(); status.textContent = ''; return; }
    history.replaceState(null, '', '#/logs?' + new URLSearchParams({ node_id: nodeID, pid }));
    const ac = new AbortController();
    stream = ac;
    page.signal.addEventListener('abort', () => ac.abort(), { once: true });
    const url = apiURL('logs', { node_id: nodeID, pid, lines: LINES, follow: follow.checked ? 1 : '' });
    page.run('logs', async () => {
      status.textContent = 'loading…';
      const resp = await fetchAPI(url, ac.signal);
      if (!follow.checked) {
        out.textContent = await resp.text();
        status.textContent = `last ${LINES} lines`;
        return;
      }
      out.replaceChildren();
      status.textContent = 'following…';
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const atBottom = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
        out.append(dec.decode(value, { stream: true }));
        if (atBottom) out.scrollTop = out.scrollHeight;
      }
      out.append(dec.decode());
      status.textContent = 'the stream ended';
    });
  };
  worker.addEventListener('change', show);
  follow.addEventListener('change', show);
  refresh.addEventListener('click', show);

  page.run('workers', async () => {
    // Workers only: the raylet keeps no log of a driver.
    const list = await page.json('workers', { limit: 10000, filter: 'worker_type=WORKER' });
    const want = JSON.stringify([page.params.get('node_id') || '', page.params.get('pid') || '']);
    const byNode = new Map();
    for (const w of list.result) {
      if (!byNode.has(w.node_id)) byNode.set(w.node_id, []);
      byNode.get(w.node_id).push(w);
    }
    let found = false;
    for (const [nodeID, ws] of byNode) {
      worker.append(el('optgroup', { label: 'node ' + nodeID }, ws.map((w) => {
        const value = JSON.stringify([w.node_id, String(w.pid)]);
        found = found || value === want;
        return el('option', { value, text: `pid ${w.pid} · ${w.worker_type} · ${w.state}` +
          (w.actor_id ? ' · actor ' + w.actor_id : '') });
      })));
    }
    // A link from another page may name a worker that has left the list.
    if (!found && page.params.get('pid')) {
      worker.append(el('option', { value: want, text: `pid ${page.params.get('pid')} (not listed)` }));
      found = true;
    }
    if (found) { worker.value = want; show(); }
  });
}
