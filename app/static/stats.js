// The statistics page: /statistics for a window, and the latest monitoring report.
async function load() {
  const w = document.getElementById('window').value;
  const r = await api(`/statistics?window=${w}`);
  const summary = document.getElementById('summary');
  if (!r.ok) { summary.innerHTML = `<span class="error">${escapeHtml(r.body.message)}</span>`; return; }
  const s = r.body;
  summary.textContent = `${s.total} predictions, ${s.errors} errors (${(s.error_rate * 100).toFixed(2)}%), ${s.rejected ?? 0} refused, mean confidence ` +
    (s.mean_confidence === null ? '–' : (s.mean_confidence * 100).toFixed(1) + '%');
  barChart(document.getElementById('per-hour'), Object.keys(s.per_hour).map(h => h.slice(11, 13) + 'h'), Object.values(s.per_hour));
  barChart(document.getElementById('per-label'), Object.keys(s.per_label), Object.values(s.per_label));
  barChart(document.getElementById('confidence'), s.confidence_histogram.map((_, i) => (i * 5) + '%'), s.confidence_histogram, '#12b76a');
  barChart(document.getElementById('per-version'), Object.keys(s.per_version).map(v => 'v' + v), Object.values(s.per_version), '#7a5af8');
  const l = s.latency_ms;
  document.getElementById('latency').innerHTML = ['mean', 'p50', 'p95', 'p99']
    .map(k => `<tr><td>${k}</td><td>${l[k] === null ? '–' : l[k] + ' ms'}</td></tr>`).join('');
  document.getElementById('feedback-accuracy').textContent = s.feedback.accuracy === null ? '–'
    : `${(s.feedback.accuracy * 100).toFixed(1)}% (${s.feedback.count})`;

  const rep = await api('/monitoring/latest');
  const box = document.getElementById('report');
  if (!rep.ok) { box.textContent = rep.status === 404 ? 'No monitoring report yet.' : rep.body.message; return; }
  const report = rep.body;
  box.innerHTML = `<p>Run <code>${escapeHtml(report.run_id || '')}</code> at ${escapeHtml(report.created_at)}: ` +
    `<strong class="${report.status}">${report.status}</strong></p><table>` +
    Object.entries(report.checks || {}).map(([name, c]) =>
      `<tr><td>${escapeHtml(name)}</td><td class="${c.status}">${c.status}</td><td>${escapeHtml(c.message || '')}</td></tr>`).join('') +
    '</table>';
  const psi = (report.drift && report.drift.psi) || [];
  if (psi.length) {
    const canvas = document.getElementById('drift');
    canvas.hidden = false;
    document.getElementById('drift-title').hidden = false;
    barChart(canvas, psi.map((_, i) => i), psi, '#f79009');
  }
}
document.getElementById('window').addEventListener('change', load);
load();
