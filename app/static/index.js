// Draw or upload a digit, show the prediction, send feedback.
const pad = document.getElementById('pad');
const ctx = pad.getContext('2d');
let drawing = false, drawn = false;

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

