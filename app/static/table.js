// Send the generated form as one row: numbers for numeric columns, strings for categorical ones, null for
// a field left empty (only columns that were missing in training may be).
document.getElementById('row-form').addEventListener('submit', async e => {
  e.preventDefault();
  const row = {};
  for (const el of e.target.elements) {
    if (!el.name) continue;
    if (el.value === '') row[el.name] = null;  // a field left empty: imputed, as missing cells were in training
    else row[el.name] = el.type === 'number' ? Number(el.value) : el.value;
  }
  show(await api('/predict', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ instances: [row] }) }));
});
