// Timeline: each task attempt as a bar on its node's worker row, from the
// Chrome trace events of /api/v0/timeline; the same JSON downloads for
// Perfetto or chrome://tracing.
import { el, apiURL, fmtDuration } from './util.js';

const SVG = 'http://www.w3.org/2000/svg';
const LABEL_W = 190, ROW_H = 22, AXIS_H = 26, NODE_H = 20;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

export function render(page) {
  const job = el('input', { type: 'search', placeholder: 'all jobs', size: 16 });
  job.value = page.params.get('job_id') || '';
  const reload = el('button', { type: 'button', text: 'Reload' });
  const download = el('a', { download: 'rayo-timeline.json', text: 'Download JSON (for Perfetto)' });
  const info = el('p', { class: 'muted' });
  const chart = el('div', { class: 'timeline', id: 'timeline' });
  const tip = el('div', { class: 'tooltip', hidden: true });
  page.root.append(el('h2', { text: 'Timeline' }),
    el('div', { class: 'controls' }, el('label', {}, 'Job', job), reload, download), info, chart, tip);

  const load = async () => {
    const url = apiURL('timeline', { job_id: job.value.trim() });
    download.href = url;
    const events = await page.json('timeline', { job_id: job.value.trim() });
    if (!Array.isArray(events)) throw new Error('the timeline is not a list of trace events');
    draw(chart, tip, events, info);
  };
  job.addEventListener('change', () => page.run('timeline', load));
  reload.addEventListener('click', () => page.run('timeline', load));
  page.run('timeline', load);
}

function draw(chart, tip, events, info) {
  const names = new Map(); // "pid" or "pid/tid" → name from metadata events
  for (const e of events) {
    if (e.ph === 'M' && e.args && e.args.name) {
      names.set(e.name === 'thread_name' ? `${e.pid}/${e.tid}` : String(e.pid), String(e.args.name));
    }
  }
  const bars = events.filter((e) => e.ph === 'X' && Number.isFinite(e.ts));
  if (bars.length === 0) {
    info.textContent = 'No task has run yet.';
    chart.replaceChildren();
    return;
  }
  // Rows: one per (node, worker), grouped under their node.
  const nodes = new Map();
  for (const e of bars) {
    const pid = String(e.pid), tid = String(e.tid);
    if (!nodes.has(pid)) nodes.set(pid, new Map());
    const rows = nodes.get(pid);
    if (!rows.has(tid)) rows.set(tid, []);
    rows.get(tid).push(e);
  }
  const t0 = Math.min(...bars.map((e) => e.ts));
  const t1 = Math.max(...bars.map((e) => e.ts + (e.dur || 0)));
  const span = Math.max(t1 - t0, 1);
  const width = Math.max(700, chart.clientWidth - 2);
  const plotW = width - LABEL_W - 10;
  const x = (ts) => LABEL_W + ((ts - t0) / span) * plotW;

  let y = AXIS_H;
  const body = [];
  for (const pid of [...nodes.keys()].sort()) {
    body.push(svg('text', { class: 'node', x: 6, y: y + 14 }, names.get(pid) || 'node ' + pid));
    y += NODE_H;
    const rows = nodes.get(pid);
    for (const tid of [...rows.keys()].sort()) {
      body.push(svg('text', { x: 16, y: y + 15 }, names.get(`${pid}/${tid}`) || 'worker ' + tid));
      body.push(svg('line', { x1: LABEL_W, x2: width - 10, y1: y + ROW_H - 1, y2: y + ROW_H - 1, stroke: '#eef0f3' }));
      for (const e of rows.get(tid)) {
        const state = String((e.args && e.args.state) || '');
        const r = svg('rect', { class: 'bar ' + state.replace(/[^A-Z_]/g, ''), x: x(e.ts), y: y + 3,
          width: Math.max(1.5, ((e.dur || 0) / span) * plotW), height: ROW_H - 6, rx: 2 });
        r.dataset.name = String(e.name || '');
        r.dataset.dur = String(e.dur || 0);
        r.dataset.state = state;
        r.dataset.task = String((e.args && e.args.task_id) || '');
        r.dataset.where = `node ${pid} · worker ${tid}`;
        body.push(r);
      }
      y += ROW_H;
    }
  }
  const root = svg('svg', { width, height: y + 6, viewBox: `0 0 ${width} ${y + 6}` });
  root.append(...axis(t0, span, plotW, y), ...body);
  root.addEventListener('mousemove', (ev) => {
    const r = ev.target;
    if (!(r instanceof SVGRectElement) || !r.classList.contains('bar')) { tip.hidden = true; return; }
    tip.replaceChildren(el('strong', { text: r.dataset.name }), ' ' + fmtDuration(Number(r.dataset.dur) / 1000),
      el('div', { text: [r.dataset.state, r.dataset.task && 'task ' + r.dataset.task].filter(Boolean).join(' · ') }),
      el('div', { text: r.dataset.where }));
    tip.style.left = ev.clientX + 12 + 'px';
    tip.style.top = ev.clientY + 12 + 'px';
    tip.hidden = false;
  });
  root.addEventListener('mouseleave', () => { tip.hidden = true; });
  chart.replaceChildren(root);
  info.textContent = `${bars.length} task attempts over ${fmtDuration(span / 1000)}, ` +
    `from ${new Date(t0 / 1000).toLocaleTimeString()}`;
}

// axis draws the time ticks (relative to the first event) and grid lines.
function axis(t0, span, plotW, bottom) {
  const raw = span / 8;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw);
  const out = [];
  for (let t = 0; t <= span; t += step) {
    const px = LABEL_W + (t / span) * plotW;
    out.push(svg('line', { x1: px, x2: px, y1: AXIS_H - 6, y2: bottom, stroke: '#e3e6ea' }));
    out.push(svg('text', { x: px + 3, y: 14 }, t === 0 ? '0' : fmtDuration(t / 1000)));
  }
  return out;
}
