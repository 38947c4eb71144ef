// Build the static page into web/dist/: index.html, app.js, style.css and vendor/ (pinned TFJS from
// node_modules, bundled by esbuild; never a CDN). Usage: `npm run build` (node build.mjs [--outdir DIR]).
//
// vendor/tfjs.js          tfjs-core + tfjs-converter (graph loader) + tfjs-backend-wasm, loaded at start
// vendor/backend-cpu.js   the cpu backend, imported when the user picks cpu (or wasm cannot start)
// vendor/backend-webgl.js the webgl backend, imported when the user picks webgl
// vendor/chunk-*.js       code shared by the two lazy backends (cpu kernels webgl reuses)
// vendor/*.wasm           the single-threaded wasm binaries, with and without SIMD (the browser fetches one)
// index.html              src/index.html with src/boot.js (bundled with src/backends.js, minified) inlined where
//                         it says <!-- deploykit:boot -->, an import map with the sha384 of every script where it
//                         says <!-- deploykit:importmap -->, and an integrity attribute on every script and
//                         stylesheet it links (Subresource Integrity: the browser refuses a changed file)
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, rm, writeFile, readdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const argOut = process.argv.indexOf('--outdir');
const outdir = resolve(argOut > 0 ? process.argv[argOut + 1] : join(here, 'dist'));
const src = join(here, 'src');
const vendor = join(outdir, 'vendor');

const pkgVersion = async (name) =>
  JSON.parse(await readFile(join(here, 'node_modules', name, 'package.json'), 'utf8')).version;

// Imports of ./vendor/* stay imports: app.js loads the vendor files at run time.
const vendorExternal = {
  name: 'vendor-external',
  setup(b) {
    b.onResolve({ filter: /^\.\/vendor\// }, (args) => ({ path: args.path, external: true }));
  },
};

await rm(outdir, { recursive: true, force: true });
await mkdir(vendor, { recursive: true });

// Backends import tfjs-core from ./tfjs.js (one engine, no duplicate core).
const coreFromVendor = {
  name: 'core-from-vendor',
  setup(b) {
    b.onResolve({ filter: /^@tensorflow\/tfjs-core$/ }, () => ({ path: './tfjs.js', external: true }));
  },
};
// The threaded wasm glue is never used (see src/vendor/wasm-threaded-stub.js).
const noThreadedWasm = {
  name: 'no-threaded-wasm',
  setup(b) {
    b.onResolve({ filter: /tfjs-backend-wasm-threaded-simd(\.worker)?\.js$/ }, () => ({
      path: join(src, 'vendor/wasm-threaded-stub.js'),
    }));
  },
};
// The wasm backend's emscripten factory goes through src/vendor/wasm-factory.js, which can instantiate a
// module the page compiled early (boot.js); the wrapper itself imports the real factory.
const wasmFactory = join(src, 'vendor/wasm-factory.js');
const compiledWasm = {
  name: 'compiled-wasm',
  setup(b) {
    b.onResolve({ filter: /wasm-out\/tfjs-backend-wasm\.js$/ }, (args) =>
      args.importer === wasmFactory ? undefined : { path: wasmFactory });
  },
};
// Everything that imports '@tensorflow/tfjs-core' in tfjs.js gets the inference-only core index.
const inferenceCore = {
  name: 'inference-core',
  setup(b) {
    b.onResolve({ filter: /^@tensorflow\/tfjs-core$/ }, () => ({ path: join(src, 'vendor/tfjs-core-inference.js') }));
  },
};
const vendorOptions = {
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020'],
  minify: true,
  legalComments: 'external',
  logLevel: 'warning',
};

const lazy = await build({
  ...vendorOptions,
  entryPoints: {
    'backend-cpu': join(src, 'vendor/backend-cpu.js'),
    'backend-webgl': join(src, 'vendor/backend-webgl.js'),
  },
  outdir: vendor,
  splitting: true,
  chunkNames: 'chunk-[hash]',
  plugins: [coreFromVendor],
  metafile: true,
});
// {cpu: ['backend-cpu.js', 'chunk-….js'], webgl: [...]}: what boot.js preloads for ?backend=cpu|webgl.
const lazyBackends = {};
for (const [out, info] of Object.entries(lazy.metafile.outputs)) {
  const m = /(?:^|\/)backend-(\w+)\.js$/.exec(out);
  if (!m || !info.entryPoint) continue;
  const chunks = info.imports.filter((i) => !i.external).map((i) => basename(i.path));
  lazyBackends[m[1]] = [basename(out), ...chunks];
}

// Pass 1: which tfjs-core names do app.js and the lazy backends import? Only those leave tfjs.js, so
// esbuild can drop the rest of tfjs-core (optimizers, training, layers-only ops) from the eager file.
const coreNames = new Set();
const probe = await build({
  ...vendorOptions,
  minify: false,
  write: false,
  entryPoints: {
    app: join(src, 'app.js'),
    'backend-cpu': join(src, 'vendor/backend-cpu.js'),
    'backend-webgl': join(src, 'vendor/backend-webgl.js'),
  },
  outdir: vendor,
  splitting: true,
  plugins: [
    vendorExternal,
    { name: 'core-external', setup(b) { b.onResolve({ filter: /^@tensorflow\/tfjs-core$/ }, () => ({ path: '@tensorflow/tfjs-core', external: true })); } },
  ],
});
for (const f of probe.outputFiles) {
  for (const m of f.text.matchAll(/import\s*\{([^}]*)\}\s*from\s*"(@tensorflow\/tfjs-core|\.\/vendor\/tfjs\.js)"/g)) {
    for (const spec of m[1].split(',')) {
      const name = spec.trim().split(/\s+as\s+/)[0];
      if (name) coreNames.add(name);
    }
  }
  // app.js uses `import * as tf`: collect the tf.<name> it touches.
  if (!f.path.endsWith('/app.js')) continue;
  for (const m of f.text.matchAll(/import\s*\*\s*as\s+(\w+)\s+from\s*"(@tensorflow\/tfjs-core|\.\/vendor\/tfjs\.js)"/g)) {
    for (const u of f.text.matchAll(new RegExp(`\\b${m[1]}\\.(\\w+)`, 'g'))) coreNames.add(u[1]);
  }
}
const ownExports = ['loadGraphModel', 'version_converter', 'setWasmPaths', 'version_wasm', 'useCompiledWasm'];
const coreList = [...coreNames].filter((n) => !ownExports.includes(n)).sort();
const entry = join(outdir, '.tfjs-entry.js');
await writeFile(entry, [
  '// Generated by build.mjs: the tfjs-core names the page and its backends use.',
  `export { ${coreList.join(', ')} } from ${JSON.stringify(join(src, 'vendor/tfjs-core-inference.js'))};`,
  `export { loadGraphModel, version_converter } from '@tensorflow/tfjs-converter';`,
  `export { setWasmPaths, version_wasm } from '@tensorflow/tfjs-backend-wasm';`,
  `export { useCompiledWasm } from ${JSON.stringify(wasmFactory)};`,
].join('\n'));

// Pass 2: the eager file.
await build({
  ...vendorOptions,
  entryPoints: { tfjs: entry },
  outdir: vendor,
  nodePaths: [join(here, 'node_modules')],
  plugins: [noThreadedWasm, compiledWasm, inferenceCore],
});
await rm(entry);

await build({
  entryPoints: [join(src, 'app.js')],
  outfile: join(outdir, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2020'],
  plugins: [vendorExternal],
  minify: true,
  logLevel: 'warning',
});

const wasmDir = join(here, 'node_modules/@tensorflow/tfjs-backend-wasm/dist');
for (const f of ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm']) {
  await cp(join(wasmDir, f), join(vendor, f));
}
await cp(join(src, 'style.css'), join(outdir, 'style.css'));

// Subresource Integrity: the sha384 of every script and stylesheet of the page, keyed by its URL relative
// to index.html ("./vendor/tfjs.js"). Static and dynamic imports are covered by the import map's
// "integrity" (Chromium 127+, Firefox 138+, Safari 18+); boot.js gives each modulepreload its own.
const sri = {};
async function hashAll(d) {
  for (const e of await readdir(d, { withFileTypes: true })) {
    const p = join(d, e.name);
    if (e.isDirectory()) await hashAll(p);
    else if (/\.(m?js|css)$/.test(e.name)) {
      sri['./' + p.slice(outdir.length + 1)] = 'sha384-' + createHash('sha384').update(await readFile(p)).digest('base64');
    }
  }
}
await hashAll(outdir);
const scripts = Object.fromEntries(Object.entries(sri).filter(([k]) => /\.m?js$/.test(k)).sort());

// boot.js runs inline, before anything else on the page can start (see the file).
const once = (text, marker, where) => {
  if (text.split(marker).length !== 2) throw new Error(`${where} must contain ${marker} exactly once`);
};
const marker = '<!-- deploykit:boot -->';
const mapMarker = '<!-- deploykit:importmap -->';
let html = await readFile(join(src, 'index.html'), 'utf8');
once(html, marker, 'src/index.html');
once(html, mapMarker, 'src/index.html');
const lazyMarker = '/* deploykit:lazy-backends */ {}';
const sriMarker = '/* deploykit:integrity */ {}';
const bootSrc = await readFile(join(src, 'boot.js'), 'utf8');
once(bootSrc, lazyMarker, 'src/boot.js');
once(bootSrc, sriMarker, 'src/boot.js');
const boot = await build({
  stdin: {
    contents: bootSrc.replace(lazyMarker, () => JSON.stringify(lazyBackends)).replace(sriMarker, () => JSON.stringify(scripts)),
    resolveDir: src,
    sourcefile: 'boot.js',
  },
  bundle: true, format: 'iife', platform: 'browser', write: false,
  minify: true, target: 'es2020', legalComments: 'none', charset: 'utf8', logLevel: 'warning',
});
const bootCode = boot.outputFiles[0].text.trim();
if (/<\/script/i.test(bootCode)) throw new Error('src/boot.js must not contain "</script"');
const importMap = JSON.stringify({ integrity: scripts });
if (/<\/script/i.test(importMap)) throw new Error('the import map must not contain "</script"');
// integrity="…" on each <script src> and <link href> of index.html that names a file of the page.
html = html.replace(/<(script|link)\b([^>]*?)\s(src|href)="(\.\/[^"]+)"/g, (tag, name, before, attr, url) => {
  if (/\bintegrity=/.test(tag)) throw new Error(`src/index.html: ${url} has its own integrity attribute`);
  if (/\brel="icon"/.test(before)) return tag;
  if (!sri[url]) throw new Error(`src/index.html links ${url}, which the build did not make`);
  return `<${name}${before} integrity="${sri[url]}" ${attr}="${url}"`;
});
html = html.replace(mapMarker, () => `<script type="importmap">${importMap}</script>`);
await writeFile(join(outdir, 'index.html'), html.replace(marker, () => `<script>${bootCode}</script>`));

const versions = {};
for (const p of ['tfjs-core', 'tfjs-converter', 'tfjs-backend-cpu', 'tfjs-backend-wasm', 'tfjs-backend-webgl']) {
  versions[`@tensorflow/${p}`] = await pkgVersion(`@tensorflow/${p}`);
}
versions.esbuild = await pkgVersion('esbuild');
await writeFile(join(vendor, 'versions.json'), JSON.stringify(versions, null, 2) + '\n');

const files = [];
async function walk(d) {
  for (const e of await readdir(d, { withFileTypes: true })) {
    if (e.isDirectory()) await walk(join(d, e.name));
    else files.push(join(d, e.name).slice(outdir.length + 1));
  }
}
await walk(outdir);
console.log(`built ${outdir}: ${files.sort().join(', ')}`);
