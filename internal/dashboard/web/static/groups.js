// Placement groups: each group's state, strategy and where its bundles are.
import { el, table, badge, mono, warnings } from './util.js';

const STATES = ['', 'PENDING', 'CREATED', 'RESCHEDULING', 'REMOVED'];

// resources shows a bundle's resources as "CPU 1, GPU 2".
function resources(r) {
  return Object.keys(r || {}).sort().map((k) => `${k} ${r[k]}`).join(', ');
}

export function render(page) {
  const state = el('select', {}, STATES.map((s) => el('option', { value: s, text: s || 'any' })));
  state.value = STATES.includes(page.params.get('state')) ? page.params.get('state') : '';
  const body = el('div');
  page.root.append(el('h2', { text: 'Placement groups' }),
    el('div', { class: 'controls' }, el('label', {}, 'State', state)), body);

  const load = async () => {
    const list = await page.json('placement_groups', { limit: 1000, filter: state.value ? 'state=' + state.value : '' });
    body.replaceChildren(...warnings(list),
      el('p', { class: 'muted', text: `${list.num_filtered} of ${list.total} placement groups` }),
      table([
        { title: 'Group', cell: (g) => mono(g.placement_group_id) },
        { title: 'Name', cell: (g) => g.name || '—' },
        { title: 'State', cell: (g) => badge(g.state) },
        { title: 'Strategy', cell: (g) => g.strategy },
        { title: 'Bundles', cls: 'wrap', cell: (g) => el('div', {}, (g.bundles || []).map((b) =>
          el('div', { class: 'bundle' }, `${b.bundle_index}: ${resources(b.resources)} on `, b.node_id ? mono(b.node_id) : '—'))) },
        { title: 'Waits because', cls: 'wrap', cell: (g) => g.reason || '' },
      ], list.result, { empty: 'No placement groups.' }));
  };
  state.addEventListener('change', () => page.run('placement_groups', load));
  page.every('placement_groups', 2000, load);
}
