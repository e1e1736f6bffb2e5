// Renders missive's exported cart-abandonment e-mail with liquidjs: the same compiled
// templates (subject, HTML with output escaping, text), the same block partials and the same
// per-recipient data, one recipient after another, on one thread.
// Usage: node liquidjs.mjs EXPORT_DIR SECONDS
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Liquid } from 'liquidjs';

const [dir, seconds = '5'] = process.argv.slice(2);
const symbols = { USD: '$', EUR: '€', GBP: '£' };
const filters = {
  money(amount, code) {
    if (amount === null || amount === undefined) return '';
    const n = Number(amount);
    const [whole, frac] = Math.abs(n).toFixed(2).split('.');
    const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
    const sym = symbols[(code || 'USD').toUpperCase()] ?? '';
    return `${n < 0 ? '-' : ''}${sym}${grouped}.${frac}`;
  },
  url_param(url, key, value) {
    if (url === null || url === undefined) return '';
    const s = String(url);
    const hash = s.indexOf('#');
    const [base, frag] = hash < 0 ? [s, ''] : [s.slice(0, hash), s.slice(hash)];
    const sep = base.includes('?') ? (base.endsWith('?') || base.endsWith('&') ? '' : '&') : '?';
    return `${base}${sep}${encodeURIComponent(key)}=${encodeURIComponent(value)}${frag}`;
  },
  pluralize(n, singular, plural) {
    return Number(n) === 1 ? singular : plural;
  },
};
function engine(escape) {
  const e = new Liquid({ root: join(dir, 'partials'), extname: '.liquid', outputEscape: escape ? 'escape' : undefined, cache: true });
  for (const [name, f] of Object.entries(filters)) e.registerFilter(name, f);
  return e;
}
const html = engine(true), text = engine(false);
const tHtml = html.parse(readFileSync(join(dir, 'html.liquid'), 'utf8'));
const tText = text.parse(readFileSync(join(dir, 'text.liquid'), 'utf8'));
const tSubject = text.parse(readFileSync(join(dir, 'subject.liquid'), 'utf8'));
const data = readFileSync(join(dir, 'data.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const expected = readFileSync(join(dir, 'expected.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));

function renderOne(d) {
  return [text.renderSync(tSubject, d), html.renderSync(tHtml, d), text.renderSync(tText, d)];
}
// Same work as missive: the subjects must match.
let mismatched = 0;
data.forEach((d, i) => { if (renderOne(d)[0].trim() !== expected[i].subject) mismatched++; });
const warm = Date.now() + 1000;
let i = 0;
while (Date.now() < warm) renderOne(data[i++ % data.length]);
const start = process.hrtime.bigint();
const until = Date.now() + Number(seconds) * 1000;
let renders = 0, bytes = 0;
while (Date.now() < until) {
  for (let k = 0; k < 16; k++) {
    const [, h] = renderOne(data[i++ % data.length]);
    bytes += h.length;
    renders++;
  }
}
const secs = Number(process.hrtime.bigint() - start) / 1e9;
console.log(JSON.stringify({ engine: 'liquidjs', renders, seconds: secs, renders_per_second: renders / secs, subject_mismatches: mismatched, avg_html_chars: bytes / renders }));
