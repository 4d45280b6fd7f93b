// Submit a file to POST /batches and follow GET /batches/<id> until it succeeds or fails.
document.getElementById('batch-form').addEventListener('submit', async e => {
  e.preventDefault();
  const out = document.getElementById('batch-status');
  const file = document.getElementById('batch-file').files[0];
  if (!file) { out.textContent = 'choose a file first'; return; }
  const form = new FormData(); form.append('file', file);
  let r = await api('/batches', { method: 'POST', body: form });
  if (!r.ok) { out.innerHTML = `<span class="error">${escapeHtml(r.body.error)}: ${escapeHtml(r.body.message)}</span>`; return; }
  const id = r.body.id;
  while (true) {
    r = await api(`/batches/${id}`);
    const b = r.body;
    if (!r.ok) { out.innerHTML = `<span class="error">${escapeHtml(b.error)}: ${escapeHtml(b.message)}</span>`; return; }
    out.innerHTML = `batch <code>${id}</code>: <strong id="batch-state">${escapeHtml(b.status)}</strong>` +
      (b.rows ? ` · ${b.scored || 0}/${b.rows} rows` : '') +
      (b.status === 'succeeded' ? ` · <a href="${b.links.result}">download result</a>` : '') +
      (b.error ? `<br><span class="error">${escapeHtml(b.error)}</span>` : '');
    if (b.status === 'succeeded' || b.status === 'failed') return;
    await new Promise(resolve => setTimeout(resolve, 1500));
  }
});
