// Shared helpers: JSON calls that surface the API's {error, message}, simple bar charts.
async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const key = localStorage.getItem('apiKey');
  if (key) headers['X-API-Key'] = key;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  let body = null;
  try { body = await response.json(); } catch (e) { body = { error: 'bad_response', message: response.statusText }; }
  if (response.status === 401 && !options.retried) {
    const entered = prompt('This service needs an API key:');
    if (entered) { localStorage.setItem('apiKey', entered); return api(path, Object.assign({}, options, { retried: true })); }
  }
  return { ok: response.ok, status: response.status, body };
}

function barChart(canvas, labels, values, color = '#2f6fed') {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height, pad = 24;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...values);
  const bw = (w - pad) / Math.max(1, values.length);
  ctx.font = '10px system-ui';
  values.forEach((v, i) => {
    const bh = (h - 2 * pad) * v / max;
    ctx.fillStyle = color;
    ctx.fillRect(pad + i * bw + 2, h - pad - bh, Math.max(1, bw - 4), bh);
    ctx.fillStyle = '#1d2330';
    if (values.length <= 30) ctx.fillText(String(labels[i]).slice(-5), pad + i * bw + 2, h - 8);
    if (v && values.length <= 30) ctx.fillText(String(Math.round(v * 1000) / 1000), pad + i * bw + 2, h - pad - bh - 3);
  });
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
}

(async () => {
  const badge = document.getElementById('model-badge');
  const r = await api('/health');
  badge.textContent = r.body && r.body.model && r.body.model.version
    ? `model: ${r.body.model.name} v${r.body.model.version}` : 'model: not loaded';
})();
