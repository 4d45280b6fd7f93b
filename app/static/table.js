// Send the generated form as one row: numbers for numeric columns, strings for categorical ones.
document.getElementById('row-form').addEventListener('submit', async e => {
  e.preventDefault();
  const row = {};
  for (const el of e.target.elements) {
    if (!el.name) continue;
    row[el.name] = el.type === 'number' ? Number(el.value) : el.value;
  }
  show(await api('/predict', { method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ instances: [row] }) }));
});
