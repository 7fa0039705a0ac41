// The attacker's page of test_another_origins_page_can_neither_read_nor_cancel:
// served from another origin, it tries to read the dashboard's API, cancel an
// execution and open its event stream with the user's cookie, and reports.
const target = document.body.dataset.target;
const id = document.body.dataset.id;
const results = [];
async function probe(name, f) {
  try { await f(); results.push(name + ':sent'); } catch (e) { results.push(name + ':blocked'); }
}
(async () => {
  await probe('read', async () => {
    const r = await fetch(target + '/api/status', {credentials: 'include'});
    await r.text();
  });
  await probe('cancel', () => fetch(target + '/api/executions/' + id + '/cancel', {method: 'POST', mode: 'no-cors', credentials: 'include'}));
  await probe('sse', () => new Promise((ok, bad) => { const s = new EventSource(target + '/api/watch', {withCredentials: true}); s.onopen = ok; s.onerror = () => { s.close(); bad(); }; }));
  document.title = 'done ' + results.join(' ');
})();
