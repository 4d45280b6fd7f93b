// Upload a photo, preview it, show the class with its top 3, send feedback (result.js).
const fileInput = document.getElementById('file');
const preview = document.getElementById('preview');

fileInput.addEventListener('change', () => {
  const file = fileInput.files[0];
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.hidden = !file;
  if (file) preview.src = URL.createObjectURL(file);
});

document.getElementById('upload-form').addEventListener('submit', async e => {
  e.preventDefault();
  const file = fileInput.files[0];
  if (!file) { show({ ok: false, body: { error: 'no_file', message: 'choose a photo first' } }); return; }
  const form = new FormData(); form.append('file', file);
  show(await api('/predict', { method: 'POST', body: form }));
});
