// The Node peer of the sync-emit comparison in benches/bus.rs: a plain EventEmitter with 1,
// 10 and 100 listeners, each adding the event's number to a sink, emitting one reused object
// (no allocation per emit, as tidings emits a small struct by value). For each count: a
// warm-up, then the best of five timed loops; prints `listeners ns_per_emit` per line.
//
//   node emitter_bench.js <emits-per-loop>
const { EventEmitter } = require('events');

function measure(listeners, emits) {
  const ee = new EventEmitter();
  ee.setMaxListeners(0);
  let sink = 0;
  for (let i = 0; i < listeners; i++) {
    ee.on('tick', (e) => { sink += e.n; });
  }
  const event = { n: 0 };
  const loop = (count) => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < count; i++) {
      event.n = i;
      ee.emit('tick', event);
    }
    return Number(process.hrtime.bigint() - start) / count;
  };
  loop(Math.min(emits, 1_000_000));
  let best = Infinity;
  for (let run = 0; run < 5; run++) {
    best = Math.min(best, loop(emits));
  }
  if (sink === 0.5) console.error('unreachable');
  return best;
}

const emits = Number(process.argv[2] || 10_000_000);
for (const listeners of [1, 10, 100]) {
  console.log(`${listeners} ${measure(listeners, Math.max(100_000, Math.floor(emits / listeners))).toFixed(2)}`);
}
