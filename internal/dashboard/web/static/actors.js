// Actors: every actor with its state, placement and how it died.
import { el, table, badge, mono, logsLink, warnings } from './util.js';

const STATES = ['', 'DEPENDENCIES_UNREADY', 'PENDING_CREATION', 'ALIVE', 'RESTARTING', 'DEAD'];

export function render(page) {
  const state = el('select', {}, STATES.map((s) => el('option', { value: s, text: s || 'any' })));
  state.value = STATES.includes(page.params.get('state')) ? page.params.get('state') : '';
  const body = el('div');
  page.root.append(el('h2', { text: 'Actors' }),
    el('div', { class: 'controls' }, el('label', {}, 'State', state)), body);

  const load = async () => {
    const list = await page.json('actors', { limit: 1000, filter: state.value ? 'state=' + state.value : '' });
    body.replaceChildren(...warnings(list),
      el('p', { class: 'muted', text: `${list.num_filtered} of ${list.total} actors` }),
      table([
        { title: 'Actor', cell: (a) => mono(a.actor_id) },
        { title: 'Class', cell: (a) => a.class_name || '—' },
        { title: 'Name', cell: (a) => (a.name ? (a.namespace ? a.namespace + '/' : '') + a.name : '—') },
        { title: 'State', cell: (a) => badge(a.state) },
        { title: 'Node', cell: (a) => mono(a.node_id) },
        { title: 'PID', cell: (a) => logsLink(a.node_id, a.pid) },
        { title: 'Restarts', cell: (a) => String(a.num_restarts ?? 0) },
        { title: 'Death cause', cls: 'wrap', cell: (a) => (a.death_cause
          ? el('span', {}, badge(a.death_cause), ' ' + (a.death_message || '')) : '') },
      ], list.result, { empty: 'No actors.' }));
  };
  state.addEventListener('change', () => page.run('actors', load));
  page.every('actors', 2000, load);
}
