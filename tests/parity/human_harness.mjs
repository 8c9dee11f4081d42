// Human's faceres / mobilefacenet reference runs for exprbench's parity test and benchmark.
//
// Usage: node human_harness.mjs JOB.json
//   JOB = {"model": "faceres" | "mobilefacenet", "modelJson": path (default: faceres.json
//          of @vladmandic/human), "repeat": N, "warmup": N, "scale": box enlargement
//          (default 1.4, Human's config.face.detector.scale),
//          "cases": [{"image": png/jpg, "box": [x, y, w, h], "input": f32 file (optional),
//                     "dumpInput": f32 file (optional)}]}
//
// The graph model is loaded with tfjs 4.22's loadGraphModel (the tfjs Human 3.3.6 bundles)
// from the package's own files and run on tfjs's wasm backend. Per case, the face crop is
// cut with Human's own code (src/face/facemeshutil.ts enlargeBox + squarifyBox +
// cutAndResize with FaceMesh's 192 px, then faceres.ts `enhance` or mobilefacenet.ts's
// resize), the model runs on it ("own"), and, when "input" names a raw float32 NHWC file
// (exprbench's model input), also on exactly that tensor ("given"). "dumpInput" receives
// the model input cut here, as raw float32. Prints one JSON document on stdout.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, extname } from 'node:path';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');
require('@tensorflow/tfjs-backend-wasm'); // registers the 'wasm' backend
const jpeg = require('jpeg-js');
const { PNG } = require('pngjs');

// package.json is not in the package's exports: go up from its main file (dist/)
const humanDir = dirname(dirname(require.resolve('@vladmandic/human')));
const humanVersion = JSON.parse(readFileSync(join(humanDir, 'package.json'), 'utf8')).version;

const SIZES = { faceres: 224, mobilefacenet: 112 };
const OUTPUTS = {
  faceres: ['global_pooling/Mean', 'gender_pred/Sigmoid', 'age_pred/Softmax'],
  mobilefacenet: ['embeddings'],
};

function decode(path) {
  const buffer = readFileSync(path);
  const ext = extname(path).toLowerCase();
  const img = (ext === '.png') ? PNG.sync.read(buffer)
    : jpeg.decode(buffer, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 2048 });
  const { width, height } = img;
  const rgb = new Float32Array(width * height * 3);
  for (let p = 0, q = 0; p < width * height; p++) {
    rgb[q++] = img.data[4 * p];
    rgb[q++] = img.data[4 * p + 1];
    rgb[q++] = img.data[4 * p + 2];
  }
  return tf.tensor4d(rgb, [1, height, width, 3], 'float32');
}

// ---- verbatim from Human 3.3.6 src/face/facemeshutil.ts
const getBoxSize = (box) => [Math.abs(box.endPoint[0] - box.startPoint[0]), Math.abs(box.endPoint[1] - box.startPoint[1])];
const getBoxCenter = (box) => [box.startPoint[0] + (box.endPoint[0] - box.startPoint[0]) / 2, box.startPoint[1] + (box.endPoint[1] - box.startPoint[1]) / 2, 1];
const enlargeBox = (box, factor) => {
  const center = getBoxCenter(box);
  const size = getBoxSize(box);
  const halfSize = [factor * size[0] / 2, factor * size[1] / 2];
  return { startPoint: [center[0] - halfSize[0], center[1] - halfSize[1]], endPoint: [center[0] + halfSize[0], center[1] + halfSize[1]] };
};
const squarifyBox = (box) => {
  const centers = getBoxCenter(box);
  const size = getBoxSize(box);
  const halfSize = Math.max(...size) / 2;
  return { startPoint: [Math.round(centers[0] - halfSize), Math.round(centers[1] - halfSize)], endPoint: [Math.round(centers[0] + halfSize), Math.round(centers[1] + halfSize)] };
};
const cutAndResize = (box, image, cropSize) => {
  const h = image.shape[1];
  const w = image.shape[2];
  const cutBox = [box.startPoint[1] / h, box.startPoint[0] / w, box.endPoint[1] / h, box.endPoint[0] / w];
  const crop = tf.image.cropAndResize(image, [cutBox], [0], cropSize);
  const norm = tf.div(crop, tf.scalar(255, 'float32'));
  tf.dispose(crop);
  return norm;
};
// ---- faceres.ts enhance (no optional crop) and mobilefacenet.ts predict's resize
function modelInput(kind, face, size) {
  const crop = tf.image.resizeBilinear(face, [size, size], false);
  if (kind !== 'faceres') return crop;
  const norm = tf.mul(crop, tf.scalar(255, 'float32'));
  tf.dispose(crop);
  return norm;
}

async function loadGraph(path) {
  const json = JSON.parse(readFileSync(path, 'utf8'));
  const weightSpecs = json.weightsManifest.flatMap((group) => group.weights);
  const buffers = json.weightsManifest.flatMap((group) => group.paths.map((p) => readFileSync(join(dirname(path), p))));
  const data = Buffer.concat(buffers);
  const weightData = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
  return tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs,
    weightData,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy,
    signature: json.signature,
    userDefinedMetadata: json.userDefinedMetadata,
  }));
}

async function run(model, kind, input) {
  const res = model.execute(input, OUTPUTS[kind]);
  const list = Array.isArray(res) ? res : [res];
  const out = {};
  for (let i = 0; i < list.length; i++) {
    out[OUTPUTS[kind][i]] = Array.from(await list[i].data()); // eslint-disable-line no-await-in-loop
  }
  tf.dispose(list);
  return out;
}

async function main() {
  const job = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  const kind = job.model;
  if (!(kind in SIZES)) throw new Error(`unknown model ${kind}`);
  await tf.setBackend('wasm');
  await tf.ready();
  const t0 = performance.now();
  const modelJson = job.modelJson || join(humanDir, 'models', 'faceres.json');
  const model = await loadGraph(modelJson);
  const loadMs = performance.now() - t0;
  const size = SIZES[kind];
  const cases = [];
  for (const c of job.cases) {
    const image = decode(c.image);
    const [x, y, w, h] = c.box;
    const box = squarifyBox(enlargeBox({ startPoint: [x, y], endPoint: [x + w, y + h] }, job.scale || 1.4));
    const t1 = performance.now();
    const face = cutAndResize(box, image, [192, 192]);
    const input = modelInput(kind, face, size);
    const cropMs = performance.now() - t1;
    if (c.dumpInput) writeFileSync(c.dumpInput, Buffer.from((await input.data()).buffer));
    for (let i = 0; i < (job.warmup || 0); i++) await run(model, kind, input); // eslint-disable-line no-await-in-loop
    const ms = [];
    let own;
    for (let i = 0; i < Math.max(1, job.repeat || 1); i++) {
      const t2 = performance.now();
      own = await run(model, kind, input); // eslint-disable-line no-await-in-loop
      ms.push(performance.now() - t2);
    }
    let given = null;
    if (c.input) {
      const raw = readFileSync(c.input);
      const values = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
      const tensor = tf.tensor4d(values, [1, size, size, 3], 'float32');
      given = await run(model, kind, tensor);
      tf.dispose(tensor);
    }
    tf.dispose([image, face, input]);
    cases.push({ image: c.image, box: [box.startPoint, box.endPoint], own, given, ms, cropMs });
  }
  const out = {
    backend: tf.getBackend(),
    versions: { human: humanVersion, tfjs: tf.version_core },
    model: kind,
    modelJson,
    loadMs,
    cases,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
