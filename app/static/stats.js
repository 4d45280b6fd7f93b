// The statistics page: /statistics for a window, and the latest monitoring report, drawn with Chart.js
// (app/static/vendor/chartjs: the npm package's build, served by the app; no CDN).
const charts = {};

function draw(id, config) {
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart(document.getElementById(id), Object.assign({ options: {} }, config));
  return charts[id];
}

function bars(id, labels, datasets, extra = {}) {
  return draw(id, {
    type: 'bar',
    data: { labels, datasets },
    options: Object.assign({ responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { display: datasets.length > 1 } } }, extra),
  });
}

async function load() {
  const w = document.getElementById('window').value;
  const r = await api(`/statistics?window=${w}`);
  const summary = document.getElementById('summary');
  if (!r.ok) { summary.innerHTML = `<span class="error">${escapeHtml(r.body.message)}</span>`; return; }
  const s = r.body;
  summary.textContent = `${s.total} predictions, ${s.errors} errors (${(s.error_rate * 100).toFixed(2)}%), ${s.rejected ?? 0} refused, ` +
    (s.values ? `predicted values: mean ${s.values.mean.toPrecision(4)}, standard deviation ${s.values.std.toPrecision(4)}`
      : 'mean confidence ' + (s.mean_confidence === null ? '–' : (s.mean_confidence * 100).toFixed(1) + '%'));

  const hours = Object.keys(s.per_hour);
  bars('per-hour', hours.map(h => h.slice(5, 10) + ' ' + h.slice(11, 13) + 'h'), [
    { label: 'predictions', data: Object.values(s.per_hour), backgroundColor: '#2f6fed', yAxisID: 'y' },
    { label: 'mean latency (ms)', type: 'line', data: hours.map(h => (s.per_hour_latency_ms || {})[h] ?? null),
      borderColor: '#f04438', yAxisID: 'latency' },
  ], { scales: { y: { beginAtZero: true }, latency: { position: 'right', beginAtZero: true, grid: { drawOnChartArea: false } } } });
  bars('per-label', Object.keys(s.per_label), [{ label: 'predictions', data: Object.values(s.per_label), backgroundColor: '#2f6fed' }]);
  bars('confidence', s.confidence_histogram.map((_, i) => `${i * 5}-${i * 5 + 5}%`),
    [{ label: 'predictions', data: s.confidence_histogram, backgroundColor: '#12b76a' }]);
  const versions = Object.keys(s.per_version);
  bars('per-version', versions.map(v => 'v' + v), [
    { label: 'predictions', data: Object.values(s.per_version), backgroundColor: '#7a5af8', yAxisID: 'y' },
    { label: 'mean confidence', type: 'line', data: versions.map(v => (s.per_version_confidence || {})[v] ?? null),
      borderColor: '#f79009', yAxisID: 'confidence' },
  ], { scales: { y: { beginAtZero: true }, confidence: { position: 'right', min: 0, max: 1, grid: { drawOnChartArea: false } } } });

  const l = s.latency_ms;
  document.getElementById('latency').innerHTML = ['mean', 'p50', 'p95', 'p99']
    .map(k => `<tr><td>${k}</td><td>${l[k] === null ? '–' : l[k] + ' ms'}</td></tr>`).join('');
  document.getElementById('feedback-accuracy').textContent = s.feedback.mae != null
    ? `MAE ${s.feedback.mae.toPrecision(4)}, RMSE ${s.feedback.rmse.toPrecision(4)} (${s.feedback.count})`
    : s.feedback.accuracy === null ? '–' : `${(s.feedback.accuracy * 100).toFixed(1)}% (${s.feedback.count})`;
  const info = await api('/model-info');
  const histogram = info.ok && (s.per_version_value_histogram || {})[info.body.version];
  if (histogram && info.body.value_bins) {  // a regressor: the distribution of its predicted values
    const e = info.body.value_bins, fmt = v => Number(v).toPrecision(3);
    const names = e.slice(0, -1).map((low, i) => `${i ? fmt(low) : '<'}–${i < e.length - 2 ? fmt(e[i + 1]) : '>'}`);
    document.getElementById('values-card').hidden = false;
    bars('values', names, [{ label: 'predictions', data: names.map((_, i) => histogram[i] || 0), backgroundColor: '#12b76a' }]);
  }

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
    document.getElementById('drift').hidden = false;
    document.getElementById('drift-title').hidden = false;
    const names = report.drift.features || psi.map((_, i) => `feature ${i}`);
    bars('drift', names, [{ label: 'PSI', data: psi, backgroundColor: '#f79009' }]);
  }
}
document.getElementById('window').addEventListener('change', load);
load();
