// Show a prediction with its top classes, and send feedback on it (both pages).
let lastPrediction = null, lastLabels = [], lastToken = null;

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
  lastToken = r.body.feedback_token;
  lastLabels = labels;
  out.innerHTML = `<div class="label" id="predicted-label">${escapeHtml(p.label)}</div>
    <p>confidence <strong id="confidence">${(p.confidence * 100).toFixed(1)}%</strong></p>
    <table>${top3.map(([l, v]) => `<tr><td>${escapeHtml(l)}</td><td>${(v * 100).toFixed(1)}%</td></tr>`).join('')}</table>
    <p class="muted">model ${escapeHtml(r.body.model.name)} version <span id="model-version">${escapeHtml(r.body.model.version)}</span><br>
    prediction id <code id="prediction-id">${p.id}</code> · ${r.body.latency_ms} ms</p>`;
  const select = document.getElementById('true-label');
  select.innerHTML = labels.map(l => `<option ${l === p.label ? 'selected' : ''}>${escapeHtml(l)}</option>`).join('');
  document.getElementById('feedback-status').textContent = '';
  feedback.hidden = false;
}

document.getElementById('send-feedback').addEventListener('click', async () => {
  const label = lastLabels[document.getElementById('true-label').selectedIndex];
  const r = await api(`/predictions/${lastPrediction.id}/feedback`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ label, token: lastToken }) });
  document.getElementById('feedback-status').textContent = r.ok ? 'thanks, recorded' : `${r.body.error}: ${r.body.message}`;
});
