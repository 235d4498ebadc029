// Overview: the cluster's nodes with live usage, its resources, and how many
// tasks run and actors live.
import { el, table, badge, bar, fmtBytes, mono } from './util.js';

export function render(page) {
  const cards = el('div', { class: 'cards' });
  const resources = el('div');
  const nodes = el('div');
  page.root.append(el('h2', { text: 'Cluster' }), cards, el('h3', { text: 'Resources' }),
    resources, el('h3', { text: 'Nodes' }), nodes);

  const counts = { nodes: '—', running: '—', tasks: '—', alive: '—' };
  const drawCards = () => cards.replaceChildren(
    card('Alive nodes', counts.nodes, 'count-nodes'),
    card('Running tasks', counts.running, 'count-running'),
    card('Tasks seen', counts.tasks, 'count-tasks'),
    card('Alive actors', counts.alive, 'count-actors'));
  drawCards();

  page.every('nodes', 1000, async () => {
    const list = await page.json('nodes', { limit: 10000 });
    const alive = list.result.filter((n) => n.state === 'ALIVE');
    counts.nodes = `${alive.length} / ${list.result.length}`;
    drawCards();
    resources.replaceChildren(resourceTable(alive));
    nodes.replaceChildren(nodeTable(list.result));
  });
  page.every('summaries', 1000, async () => {
    const [t, a] = await Promise.all([page.json('tasks/summarize'), page.json('actors/summarize')]);
    counts.running = sumState(t.summary, 'RUNNING');
    counts.tasks = t.total;
    counts.alive = sumState(a.summary, 'ALIVE');
    drawCards();
  });
}

function card(label, value, id) {
  return el('div', { class: 'card', id }, el('div', { class: 'value', text: value }),
    el('div', { class: 'label', text: label }));
}

function sumState(summary, state) {
  return Object.values(summary || {}).reduce((n, s) => n + ((s.state_counts || {})[state] || 0), 0);
}

function resourceTable(nodes) {
  const total = {}, avail = {};
  for (const n of nodes) {
    for (const [k, v] of Object.entries(n.resources_total || {})) total[k] = (total[k] || 0) + v;
    for (const [k, v] of Object.entries(n.resources_available || {})) avail[k] = (avail[k] || 0) + v;
  }
  const rows = Object.keys(total).sort().map((k) => ({ name: k, total: total[k], avail: avail[k] || 0 }));
  // Memory resources are bytes; the rest are counts.
  const fmt = (name, x) => (/memory/i.test(name) ? fmtBytes(x) : String(Number.isInteger(x) ? x : x.toFixed(2)));
  return table([
    { title: 'Resource', cell: (r) => r.name },
    { title: 'Used', cell: (r) => bar(r.total - r.avail, r.total, `${fmt(r.name, r.total - r.avail)} / ${fmt(r.name, r.total)}`) },
    { title: 'Available', cell: (r) => fmt(r.name, r.avail) },
    { title: 'Total', cell: (r) => fmt(r.name, r.total) },
  ], rows, { empty: 'No alive nodes.' });
}

function nodeTable(nodes) {
  return table([
    { title: 'Node', cell: (n) => [mono(n.node_id), n.is_head_node ? ' (head)' : ''] },
    { title: 'Address', cell: (n) => n.address || '—' },
    { title: 'State', cell: (n) => [badge(n.state), n.death_reason ? ' ' + n.death_reason : ''] },
    { title: 'CPU', cell: (n) => bar(n.cpu_percent, 100, `${(n.cpu_percent || 0).toFixed(1)} %`) },
    { title: 'Memory', cell: (n) => bar(n.mem_used_bytes, n.mem_total_bytes,
      `${fmtBytes(n.mem_used_bytes)} / ${fmtBytes(n.mem_total_bytes)}`) },
    { title: 'Object store', cell: (n) => bar(n.object_store_used_bytes, n.object_store_capacity_bytes,
      `${fmtBytes(n.object_store_used_bytes)} / ${fmtBytes(n.object_store_capacity_bytes)}`) },
    { title: 'Spilled', cell: (n) => n.object_store_spilled_bytes
      ? `${fmtBytes(n.object_store_spilled_bytes)} (${n.object_store_spilled_objects} objects)` : '—' },
    { title: 'Workers', cell: (n) => String(n.num_workers ?? '—') },
  ], nodes, { empty: 'No nodes.' });
}
