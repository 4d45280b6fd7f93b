// Draw or upload a digit, show the prediction, send feedback.
const pad = document.getElementById('pad');
const ctx = pad.getContext('2d');
let drawing = false, drawn = false, lastPrediction = null;

function resetPad() {
  ctx.fillStyle = '#fff'; ctx.fillRect(0, 0, pad.width, pad.height);
  ctx.strokeStyle = '#000'; ctx.lineWidth = 22; ctx.lineCap = 'round'; ctx.lineJoin = 'round';
  drawn = false;
}
function point(e) {
  const r = pad.getBoundingClientRect();
  return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
}
pad.addEventListener('pointerdown', e => { drawing = true; drawn = true; ctx.beginPath(); ctx.moveTo(...point(e)); pad.setPointerCapture(e.pointerId); });
pad.addEventListener('pointermove', e => { if (drawing) { ctx.lineTo(...point(e)); ctx.stroke(); } });
pad.addEventListener('pointerup', () => { drawing = false; });
document.getElementById('clear').addEventListener('click', resetPad);
resetPad();

function show(r) {
  const out = document.getElementById('result');
  const feedback = document.getElementById('feedback');
  if (!r.ok) {
    out.innerHTML = `<span class="error">${escapeHtml(r.body.error)}: ${escapeHtml(r.body.message)}</span>`;
    feedback.hidden = true;
    return;
  }
  const p = r.body.predictions[0];
  const labels = r.body.model.labels;
  const top3 = p.probabilities.map((v, i) => [labels[i], v]).sort((a, b) => b[1] - a[1]).slice(0, 3);
  lastPrediction = p;
  out.innerHTML = `<div class="label" id="predicted-label">${p.label}</div>
    <p>confidence <strong id="confidence">${(p.confidence * 100).toFixed(1)}%</strong></p>
    <table>${top3.map(([l, v]) => `<tr><td>${l}</td><td>${(v * 100).toFixed(1)}%</td></tr>`).join('')}</table>
    <p class="muted">model ${escapeHtml(r.body.model.name)} version <span id="model-version">${escapeHtml(r.body.model.version)}</span><br>
    prediction id <code id="prediction-id">${p.id}</code> · ${r.body.latency_ms} ms</p>`;
  const select = document.getElementById('true-label');
  select.innerHTML = labels.map(l => `<option value="${l}" ${l === p.label ? 'selected' : ''}>${l}</option>`).join('');
  document.getElementById('feedback-status').textContent = '';
  feedback.hidden = false;
}

document.getElementById('classify-drawing').addEventListener('click', async () => {
  if (!drawn) { show({ ok: false, body: { error: 'empty', message: 'draw a digit first' } }); return; }
  const image = pad.toDataURL('image/png').split(',')[1];
  show(await api('/predict', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ image }) }));
});

document.getElementById('upload-form').addEventListener('submit', async e => {
  e.preventDefault();
  const file = document.getElementById('file').files[0];
  if (!file) { show({ ok: false, body: { error: 'no_file', message: 'choose an image file first' } }); return; }
  const form = new FormData(); form.append('file', file);
  show(await api('/predict', { method: 'POST', body: form }));
});

document.getElementById('send-feedback').addEventListener('click', async () => {
  const label = parseInt(document.getElementById('true-label').value, 10);
  const r = await api(`/predictions/${lastPrediction.id}/feedback`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ label }) });
  document.getElementById('feedback-status').textContent = r.ok ? 'thanks, recorded' : `${r.body.error}: ${r.body.message}`;
});
