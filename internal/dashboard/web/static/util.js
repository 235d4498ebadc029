// Helpers shared by the pages: a DOM builder that only ever creates text
// nodes from data (so nothing from the API is parsed as HTML), the API
// client, the error banner, and formatting.

// el builds an element. attrs: "class", "text", "on<event>" handlers,
// "style" (an object of CSS properties), anything else is an attribute.
// Children are nodes or strings (strings become text nodes); null and
// false are skipped.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = String(v);
    else if (k === 'style') Object.assign(node.style, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// ApiError is an answer of the API with a non-2xx status.
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
  }
}

// apiURL builds /api/v0/PATH?query; query values that are arrays repeat.
export function apiURL(path, query = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    for (const x of [].concat(v)) {
      if (x !== '' && x !== null && x !== undefined) q.append(k, x);
    }
  }
  const s = q.toString();
  return '/api/v0/' + path + (s ? '?' + s : '');
}

// fetchAPI fetches a URL and returns the response, throwing ApiError for a
// non-2xx answer with the server's {"error": ...} message.
// An API server that listens beyond loopback answers 401 to a request
// without the cluster token: the dashboard then asks for it once and keeps
// it for this browser tab (sessionStorage), sending it with every request.
const tokenKey = 'rayo-token';

export async function fetchAPI(url, signal) {
  let resp;
  for (let tries = 0; ; tries++) {
    const sent = sessionStorage.getItem(tokenKey);
    const headers = { Accept: 'application/json' };
    if (sent) headers.Authorization = 'Bearer ' + sent;
    try {
      resp = await fetch(url, { signal, headers });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'cannot reach the API server (' + e.message + ')');
    }
    if (resp.status !== 401 || tries > 0) break;
    // Requests refused together ask once: the others find the token that
    // the first one was given in the meantime.
    if (sessionStorage.getItem(tokenKey) === sent) {
      const t = window.prompt('This rayo cluster\'s API needs its token (rayo start printed where it is kept):');
      if (!t) break;
      sessionStorage.setItem(tokenKey, t.trim());
    }
  }
  if (!resp.ok) {
    let msg = resp.statusText || 'request failed';
    try {
      const body = await resp.text();
      try { msg = JSON.parse(body).error || body || msg; } catch { msg = body || msg; }
    } catch { /* keep the status text */ }
    throw new ApiError(resp.status, `${resp.status}: ${msg}`);
  }
  return resp;
}

// getJSON fetches an API URL and decodes its JSON body.
export async function getJSON(url, signal) {
  const resp = await fetchAPI(url, signal);
  try {
    return await resp.json();
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(resp.status, 'the API answered with malformed JSON');
  }
}

// The error banner lists one message per key (a page's loader); a later
// success under the same key clears it.
const errors = new Map();

export function setError(key, message) {
  if (message) errors.set(key, message); else errors.delete(key);
  const box = document.getElementById('errors');
  box.replaceChildren(...[...errors.values()].map((m) => el('div', { text: 'API error: ' + m })));
  box.hidden = errors.size === 0;
}

// Page is the life of one page: its fetches abort and its timers stop when
// the user navigates away.
export class Page {
  constructor(root, params) {
    this.root = root;
    this.params = params;
    this.ac = new AbortController();
    this.timers = new Set();
    this.keys = new Set();
  }

  get signal() { return this.ac.signal; }
  get closed() { return this.ac.signal.aborted; }

  json(path, query) { return getJSON(apiURL(path, query), this.signal); }

  // run calls fn, reporting its failure in the banner under key.
  async run(key, fn) {
    this.keys.add(key);
    try {
      await fn();
      if (!this.closed) setError(key, null);
    } catch (e) {
      if (!this.closed && e.name !== 'AbortError') setError(key, e.message);
    }
  }

  // every runs fn now and then ms after each run ends, until the page closes.
  every(key, ms, fn) {
    const tick = async () => {
      await this.run(key, fn);
      if (this.closed) return;
      const t = setTimeout(() => { this.timers.delete(t); tick(); }, ms);
      this.timers.add(t);
    };
    tick();
  }

  close() {
    this.ac.abort();
    for (const t of this.timers) clearTimeout(t);
    for (const k of this.keys) setError(k, null);
  }
}

// table renders rows with columns [{title, cell: row => node|string}];
// after(row) may return an extra <tr> placed below the row's own.
export function table(columns, rows, { empty = 'Nothing here yet.', after } = {}) {
  const body = el('tbody');
  for (const row of rows) {
    body.append(el('tr', {}, columns.map((c) => el('td', { class: c.cls }, c.cell(row)))));
    const extra = after && after(row);
    if (extra) body.append(extra);
  }
  if (rows.length === 0) {
    body.append(el('tr', {}, el('td', { class: 'muted', colspan: columns.length, text: empty })));
  }
  return el('table', {}, el('thead', {}, el('tr', {}, columns.map((c) => el('th', { text: c.title })))), body);
}

export function badge(state) {
  return el('span', { class: 'badge ' + String(state || '').replace(/[^A-Z_]/g, ''), text: state || '—' });
}

// bar shows used out of total as a filled bar with a label.
export function bar(used, total, label) {
  const frac = total > 0 ? Math.min(1, Math.max(0, used / total)) : 0;
  return el('div', { class: 'meter' + (frac > 0.9 ? ' high' : ''), title: label },
    el('span', { style: { width: (frac * 100).toFixed(1) + '%' } }),
    el('em', { text: label }));
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + ' ' + units[i];
}

export function fmtTime(ms) {
  if (!ms) return '—';
  return new Date(ms).toLocaleString();
}

export function fmtDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  // Times are whole milliseconds.
  if (ms < 1) return '< 1 ms';
  if (ms < 1000) return Math.round(ms) + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(2) + ' s';
  const m = Math.floor(ms / 60000);
  return m + ' min ' + Math.round((ms % 60000) / 1000) + ' s';
}

// span of a record from start to end (or to now while it runs).
export function duration(start, end) {
  if (!start) return '—';
  return fmtDuration((end || Date.now()) - start);
}

// short is the start of a random ID (a worker's), enough to tell it apart.
// Task and actor IDs are shown whole: those of one process share their
// first half.
export function short(id) {
  return id ? String(id).slice(0, 12) : '—';
}

export function mono(text, title) {
  return el('span', { class: 'mono', title: title || text, text: text || '—' });
}

// logsLink links a worker to the logs page.
export function logsLink(nodeID, pid) {
  if (!nodeID || !pid) return String(pid || '—');
  const q = new URLSearchParams({ node_id: nodeID, pid: String(pid) });
  return el('a', { href: '#/logs?' + q, text: String(pid), title: 'show logs' });
}

// warnings renders the list answer's warnings, if any.
export function warnings(list) {
  return (list.warnings || []).map((w) => el('div', { class: 'warning', text: w }));
}
