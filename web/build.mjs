// Builds the app into dist/: one script and one stylesheet, bundled from src/ and the
// packages in node_modules (Leaflet, Leaflet-Geoman, proj4), so nothing is fetched from
// another site when the app runs.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';

// The county's towns, drawn as labels when there are no map tiles.
const [header, ...lines] = readFileSync('../simulators/data/hertfordshire-towns.csv', 'utf8')
  .trim().split('\n').map((line) => line.split(','));
const towns = lines.map((cells) => Object.fromEntries(header.map((name, i) => [name, cells[i]])))
  .map((t) => ({ district: t.district, town: t.town, lat: Number(t.lat), lon: Number(t.lon) }));

const out = 'dist';
rmSync(out, { recursive: true, force: true });
mkdirSync(out);
const common = { bundle: true, minify: true, sourcemap: true, logLevel: 'warning' };
await build({
  ...common,
  entryPoints: ['src/main.js'],
  outfile: `${out}/app.js`,
  format: 'iife',
  target: 'es2020',
  legalComments: 'linked',
  define: { TORCH_TOWNS: JSON.stringify(towns) },
});
await build({
  ...common,
  entryPoints: ['src/app.css'],
  outfile: `${out}/app.css`,
  loader: { '.png': 'file', '.svg': 'file' },
  assetNames: 'assets/[name]-[hash]',
});
copyFileSync('index.html', `${out}/index.html`);
copyFileSync('src/favicon.svg', `${out}/favicon.svg`);
for (const name of readdirSync(out)) {
  const size = statSync(`${out}/${name}`).size;
  if (size) console.log(`web/${out}/${name.padEnd(24)} ${(size / 1024).toFixed(1).padStart(7)} KiB`);
}
