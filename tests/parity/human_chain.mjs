// Human 3.3.6's whole face chain (BlazeFace, FaceMesh, faceres) in Node on tfjs's wasm
// backend: what Human itself reports for each image, to compare the scorer's crop with.
//
// Usage: node human_chain.mjs IMAGE.png...
// Prints one JSON line per image: {"path", "faces": [{"box": [x, y, w, h], "age",
// "gender", "genderScore", "descriptor": [1024]}]} (face.box is Human's crop-sized square
// re-centred on the mesh, clamped to the image).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const { PNG } = require('pngjs');
// the package's "exports" has no usable subpath for its dist files: load them by path
const humanDir = dirname(dirname(require.resolve('@vladmandic/human')));
const H = require(join(humanDir, 'dist', 'human.node-wasm.js'));
const wasmDir = `${dirname(require.resolve('@tensorflow/tfjs-backend-wasm'))}/`;

// Human fetches its models by URL; Node's fetch has no file:// scheme
const nodeFetch = globalThis.fetch;
globalThis.fetch = async (url, opts) => {
  const u = String(url);
  if (u.startsWith('file://')) return new Response(readFileSync(u.slice(7)), { status: 200 });
  return nodeFetch(url, opts);
};

const human = new H.Human({
  backend: 'wasm',
  wasmPath: wasmDir,
  modelBasePath: `file://${join(humanDir, 'models')}/`,
  debug: false,
  body: { enabled: false },
  hand: { enabled: false },
  object: { enabled: false },
  gesture: { enabled: false },
  segmentation: { enabled: false },
  face: { emotion: { enabled: false }, iris: { enabled: false }, detector: { maxDetected: 5 } },
});

async function main() {
  await human.load();
  for (const path of process.argv.slice(2)) {
    const img = PNG.sync.read(readFileSync(path));
    const rgb = new Float32Array(img.width * img.height * 3);
    for (let p = 0, q = 0; p < img.width * img.height; p++) {
      rgb[q++] = img.data[4 * p];
      rgb[q++] = img.data[4 * p + 1];
      rgb[q++] = img.data[4 * p + 2];
    }
    const tensor = human.tf.tensor4d(rgb, [1, img.height, img.width, 3], 'float32');
    const res = await human.detect(tensor); // eslint-disable-line no-await-in-loop
    human.tf.dispose(tensor);
    const faces = res.face.map((f) => ({
      box: f.box, age: f.age, gender: f.gender, genderScore: f.genderScore, descriptor: f.embedding,
    }));
    process.stdout.write(`${JSON.stringify({ path, faces })}\n`);
  }
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
