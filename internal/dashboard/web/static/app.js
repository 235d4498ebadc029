// The dashboard's router: #/PAGE?QUERY selects a page module, which renders
// into <main> and is closed (fetches aborted, timers stopped) on leaving.
import { Page, el } from './util.js';
import * as overview from './overview.js';
import * as jobs from './jobs.js';
import * as tasks from './tasks.js';
import * as actors from './actors.js';
import * as groups from './groups.js';
import * as logs from './logs.js';
import * as timeline from './timeline.js';

const pages = { overview, jobs, tasks, actors, groups, logs, timeline };

let current = null;

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [name, query = ''] = hash.split('?', 2);
  const key = Object.hasOwn(pages, name) ? name : 'overview';
  if (current) current.close();
  const root = document.getElementById('page');
  root.replaceChildren();
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.getAttribute('href') === '#/' + key);
  }
  document.title = 'rayo · ' + key;
  current = new Page(root, new URLSearchParams(query));
  try {
    pages[key].render(current);
  } catch (e) {
    root.replaceChildren(el('p', { class: 'errors', text: 'The page failed: ' + e.message }));
  }
}

window.addEventListener('hashchange', route);
route();
