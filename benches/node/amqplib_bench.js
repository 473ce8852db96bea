// The amqplib peer of benches/amqp.rs: publish `count` persistent messages on a confirm channel
// with at most `window` awaiting confirms, consume them with prefetch `prefetch`, acknowledging
// cumulatively (`ack(msg, true)`) every `prefetch / 2` messages and at the last, and print the
// elapsed milliseconds and the CPU milliseconds used meanwhile. The clock stops where every
// contender's does: every publish confirmed, and the broker has the last acknowledgement (the
// consumer channel's close is answered only after the broker processed what came before it).
//
//   node amqplib_bench.js <url> <queue> <count> <window> <prefetch> <payload-json> <mode> <shape>
//
// `mode`: `sliding` keeps at most `window` publishes awaiting their confirms, each confirm
// callback letting the next one go; `batch` publishes `window` messages, then
// `await waitForConfirms()`, and repeats, as amqplib's docs suggest; `publish` only publishes
// `count` messages and waits for their confirms (the bench reads them back to check that they
// carry what tidings' messages carry).
//
// Each message is the payload with its own `seq`, encoded as it is sent, with the properties
// and headers tidings' RabbitMQ transport gives an event, so that the broker stores and
// delivers the same bytes for every contender.
// `shape`: `topic` publishes to the topic exchange named `queue` (bound to the queue of that
// name) with routing key `bench.ping`; `queue` uses `sendToQueue(queue, ...)` (the default
// exchange).
const { randomUUID } = require('crypto');
const amqp = require('amqplib');

// What tidings' transport sends with an event (`bridges/src/amqp/wire.rs`); sent straight to a
// queue, the queue's name is the key its outbound routes by, which goes in a header too.
function properties(shape, queue) {
  const now = new Date();
  return {
    persistent: true,
    mandatory: true,
    type: 'bench.ping',
    messageId: randomUUID(),
    timestamp: Math.floor(now.getTime() / 1000),
    contentType: 'application/json',
    headers: {
      'cloudEvents:source': 'tidings',
      'cloudEvents:time': now.toISOString(),
      'cloudEvents:specversion': '1.0',
      ...(shape === 'queue' ? { 'cloudEvents:partitionkey': queue } : {}),
    },
  };
}

async function main() {
  const [url, queue, countText, windowText, prefetchText, payload, mode, shape] = process.argv.slice(2);
  const count = Number(countText);
  const window = Number(windowText);
  const prefetch = Number(prefetchText);
  const ackEvery = Math.max(1, Math.floor(prefetch / 2));
  const template = JSON.parse(payload);
  const body = (seq) => Buffer.from(JSON.stringify({ ...template, seq }));
  const connection = await amqp.connect(url);
  const publisher = await connection.createConfirmChannel();
  const send = (seq, callback) => (shape === 'queue'
    ? publisher.sendToQueue(queue, body(seq), properties(shape, queue), callback)
    : publisher.publish(queue, 'bench.ping', body(seq), properties(shape, queue), callback));
  if (mode === 'publish') {
    for (let i = 0; i < count; i += 1) send(i);
    await publisher.waitForConfirms();
    await connection.close();
    return;
  }
  const consumer = await connection.createChannel();
  await consumer.assertQueue(queue, { durable: true });
  await consumer.prefetch(prefetch);

  let consumed = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.consume(queue, (msg) => {
    JSON.parse(msg.content);
    consumed += 1;
    if (consumed % ackEvery === 0 || consumed === count) consumer.ack(msg, true);
    if (consumed === count) done();
  });

  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  if (mode === 'batch') {
    for (let i = 0; i < count; i += window) {
      for (let j = i; j < Math.min(i + window, count); j += 1) {
        const ok = send(j);
        if (!ok) await new Promise((resolve) => publisher.once('drain', resolve));
      }
      await publisher.waitForConfirms();
    }
  } else {
    let inFlight = 0;
    let wake = null;
    for (let i = 0; i < count; i += 1) {
      while (inFlight >= window) {
        await new Promise((resolve) => { wake = resolve; });
      }
      inFlight += 1;
      const ok = send(i, (err) => {
        if (err) throw err;
        inFlight -= 1;
        if (wake) { const w = wake; wake = null; w(); }
      });
      if (!ok) await new Promise((resolve) => publisher.once('drain', resolve));
    }
  }
  await finished;
  await publisher.waitForConfirms();
  await consumer.close();
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  const cpu = process.cpuUsage(cpuStart);
  process.stdout.write(`${elapsed} ${(cpu.user + cpu.system) / 1000}\n`);
  await connection.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
