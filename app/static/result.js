// Show a prediction (a class with its top probabilities, or a value with its interval), and send
// feedback on it (both pages).
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
  const regression = r.body.model.task_type === 'regression';
  lastPrediction = p;
  lastToken = r.body.feedback_token;
  lastLabels = labels;
  const footer = `<p class="muted">model ${escapeHtml(r.body.model.name)} version <span id="model-version">${escapeHtml(r.body.model.version)}</span><br>
    prediction id <code id="prediction-id">${p.id}</code> · ${r.body.latency_ms} ms</p>`;
  if (regression) {
    const interval = p.interval ? `<p>90% interval <strong id="interval">${p.interval.map(v => v.toPrecision(4)).join(' – ')}</strong></p>` : '';
    out.innerHTML = `<div class="label" id="predicted-value">${p.value.toPrecision(4)}</div>${interval}${footer}`;
  } else {
    const top3 = p.probabilities.map((v, i) => [labels[i], v]).sort((a, b) => b[1] - a[1]).slice(0, 3);
    out.innerHTML = `<div class="label" id="predicted-label">${escapeHtml(p.label)}</div>
      <p>confidence <strong id="confidence">${(p.confidence * 100).toFixed(1)}%</strong></p>
      ${p.unsure ? `<p class="error" id="unsure">unsure, a best guess: ${escapeHtml(p.unsure_reason)}</p>` : ''}
      <table>${top3.map(([l, v]) => `<tr><td>${escapeHtml(l)}</td><td>${(v * 100).toFixed(1)}%</td></tr>`).join('')}</table>${footer}`;
    const select = document.getElementById('true-label');
    select.innerHTML = labels.map(l => `<option ${l === p.label ? 'selected' : ''}>${escapeHtml(l)}</option>`).join('');
  }
  document.getElementById('true-label').hidden = regression;
  document.getElementById('true-value').hidden = !regression;
  document.getElementById('feedback-status').textContent = '';
  feedback.hidden = false;
}

document.getElementById('send-feedback').addEventListener('click', async () => {
  const body = 'value' in lastPrediction
    ? { value: Number(document.getElementById('true-value').value), token: lastToken }
    : { label: lastLabels[document.getElementById('true-label').selectedIndex], token: lastToken };
  const r = await api(`/predictions/${lastPrediction.id}/feedback`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  document.getElementById('feedback-status').textContent = r.ok ? 'thanks, recorded' : `${r.body.error}: ${r.body.message}`;
});
