// face-api.js reference runs for exprbench's parity test and benchmark.
//
// Usage: node harness.mjs [--detector ssd|tiny] [--min-confidence 0.5] [--input-size 416]
//                         [--score-threshold 0.5] [--repeat N] [--warmup N] IMAGE...
//
// Decodes each image with jpeg-js (.jpg/.jpeg) or pngjs (.png) into an int32 [h, w, 3]
// tensor and runs face-api.js's own chain on tfjs's wasm backend:
//   detectAllFaces(tensor, options).withFaceLandmarks().withFaceExpressions()
//     .withAgeAndGender().withFaceDescriptors()
// Prints one JSON document on stdout: {"backend", "wasm", "versions", "images": [{"path", "width",
// "height", "faces": [...], "ms": [...]}]} with faces in face-api.js's order. "ms" holds the
// wall time of each timed run of the chain (decode, model load and warm-up excluded).
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join, extname } from 'node:path';
import { performance } from 'node:perf_hooks';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');
const wasm = require('@tensorflow/tfjs-backend-wasm'); // registers the 'wasm' backend
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const jpeg = require('jpeg-js');
const { PNG } = require('pngjs');

function parseArgs(argv) {
  const opts = {
    detector: 'ssd',
    minConfidence: 0.5,
    inputSize: 416,
    scoreThreshold: 0.5,
    repeat: 1,
    warmup: 0,
    images: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      i += 1;
      return argv[i];
    };
    if (arg === '--detector') opts.detector = next();
    else if (arg === '--min-confidence') opts.minConfidence = Number(next());
    else if (arg === '--input-size') opts.inputSize = Number(next());
    else if (arg === '--score-threshold') opts.scoreThreshold = Number(next());
    else if (arg === '--repeat') opts.repeat = Number(next());
    else if (arg === '--warmup') opts.warmup = Number(next());
    else if (arg.startsWith('--')) throw new Error(`unknown option ${arg}`);
    else opts.images.push(arg);
  }
  if (!['ssd', 'tiny'].includes(opts.detector)) throw new Error(`unknown detector ${opts.detector}`);
  return opts;
}

// RGBA bytes from jpeg-js / pngjs -> int32 [h, w, 3] tensor (alpha dropped, as face-api's
// Node demos do).
function decode(path) {
  const buffer = readFileSync(path);
  const ext = extname(path).toLowerCase();
  let width;
  let height;
  let rgba;
  if (ext === '.jpg' || ext === '.jpeg') {
    const img = jpeg.decode(buffer, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 2048 });
    ({ width, height } = img);
    rgba = img.data;
  } else if (ext === '.png') {
    const img = PNG.sync.read(buffer);
    ({ width, height } = img);
    rgba = img.data;
  } else {
    throw new Error(`${path}: only .jpg/.jpeg and .png are supported`);
  }
  const rgb = new Int32Array(width * height * 3);
  for (let p = 0, q = 0; p < width * height; p++) {
    rgb[q++] = rgba[4 * p];
    rgb[q++] = rgba[4 * p + 1];
    rgb[q++] = rgba[4 * p + 2];
  }
  return { width, height, tensor: tf.tensor3d(rgb, [height, width, 3], 'int32') };
}

function toJson(result) {
  const { box, score } = result.detection;
  return {
    box: [box.x, box.y, box.width, box.height],
    score,
    landmarks: result.landmarks.positions.map((p) => [p.x, p.y]),
    expressions: { ...result.expressions },
    age: result.age,
    gender: result.gender,
    genderProbability: result.genderProbability,
    descriptor: Array.from(result.descriptor),
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const pkgDir = dirname(require.resolve('@vladmandic/face-api/package.json'));
  const modelDir = join(pkgDir, 'model');
  // In Node the wasm backend reads its .wasm binaries from its own dist/ folder.
  await tf.setBackend('wasm');
  await tf.ready();

  if (opts.detector === 'ssd') await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
  else await faceapi.nets.tinyFaceDetector.loadFromDisk(modelDir);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
  await faceapi.nets.faceExpressionNet.loadFromDisk(modelDir);
  await faceapi.nets.ageGenderNet.loadFromDisk(modelDir);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);
  const options = opts.detector === 'ssd'
    ? new faceapi.SsdMobilenetv1Options({ minConfidence: opts.minConfidence })
    : new faceapi.TinyFaceDetectorOptions({ inputSize: opts.inputSize, scoreThreshold: opts.scoreThreshold });

  const run = (tensor) => faceapi.detectAllFaces(tensor, options)
    .withFaceLandmarks()
    .withFaceExpressions()
    .withAgeAndGender()
    .withFaceDescriptors();

  const images = [];
  for (const path of opts.images) {
    const { width, height, tensor } = decode(path);
    for (let i = 0; i < opts.warmup; i++) await run(tensor); // eslint-disable-line no-await-in-loop
    const ms = [];
    let results = [];
    for (let i = 0; i < Math.max(1, opts.repeat); i++) {
      const t0 = performance.now();
      results = await run(tensor); // eslint-disable-line no-await-in-loop
      ms.push(performance.now() - t0);
    }
    tensor.dispose();
    images.push({ path, width, height, faces: results.map(toJson), ms });
  }
  const out = {
    backend: tf.getBackend(),
    wasm: { threads: wasm.getThreadsCount(), simd: await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT') },
    versions: { faceapi: faceapi.version, tfjs: tf.version_core },
    images,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
