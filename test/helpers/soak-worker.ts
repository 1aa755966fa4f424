/** Soak worker: random bursts of random events (values and byte payloads), random pauses, until
 * told to stop. Every event carries the thread's sequence number: as its value, or in the first
 * 8 bytes of its payload. */
import { parentPort, workerData } from 'node:worker_threads';
import { Tracer, type TracerHandle } from '../../src/index.js';

const d = workerData as {
  trace: TracerHandle;
  name: string;
  seed: number;
  policy: 'drop-oldest' | 'drop-newest';
  control: SharedArrayBuffer;
  close: boolean;
};
const tracer = Tracer.attach(d.trace);
const w = tracer.register(d.name, { policy: d.policy });
const valueId = tracer.define('soak.value');
const bytesId = tracer.define('soak.bytes');
const control = new Int32Array(d.control);
const nap = new Int32Array(new SharedArrayBuffer(4));
let rng = d.seed >>> 0 || 1;
const random = () => {
  rng ^= rng << 13;
  rng ^= rng >>> 17;
  rng ^= rng << 5;
  return (rng >>> 0) / 4294967296;
};
let seq = 0;
const scratch = new Uint8Array(4096);
const seqView = new DataView(scratch.buffer);
parentPort!.postMessage('started');
while (Atomics.load(control, 0) === 0) {
  const burst = Math.floor(random() * 2000);
  for (let i = 0; i < burst; i++) {
    if (random() < 0.2) {
      const len = 8 + Math.floor(random() * 1500);
      seqView.setFloat64(0, seq, true);
      w.recordBytes(bytesId, scratch.subarray(0, len));
    } else {
      w.record(valueId, seq);
    }
    seq++;
  }
  if (random() < 0.5) Atomics.wait(nap, 0, 0, Math.floor(random() * 5));
}
if (d.close) w.close();
parentPort!.postMessage({ attempted: seq });
