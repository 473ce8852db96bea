// The amqplib peer of benches/amqp.rs: publish `count` persistent messages to the topic exchange
// named `queue` (bound to the queue of that name) on a confirm channel
// with at most `window` awaiting confirms, consume them with prefetch `prefetch` and a manual
// ack each, and print the elapsed milliseconds from the first publish to the last ack and the
// CPU milliseconds used meanwhile.
//
//   node amqplib_bench.js <url> <queue> <count> <window> <prefetch> <payload-json> [sliding|batch]
//
// `sliding` (the default) keeps at most `window` publishes awaiting their confirms, each
// confirm callback letting the next one go; `batch` publishes `window` messages, then
// `await waitForConfirms()`, and repeats, as amqplib's docs suggest.
const amqp = require('amqplib');

async function main() {
  const [url, queue, countText, windowText, prefetchText, payload, mode = 'sliding'] = process.argv.slice(2);
  const count = Number(countText);
  const window = Number(windowText);
  const connection = await amqp.connect(url);
  const publisher = await connection.createConfirmChannel();
  const consumer = await connection.createChannel();
  await consumer.assertQueue(queue, { durable: true });
  await consumer.prefetch(Number(prefetchText));

  let consumed = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.consume(queue, (msg) => {
    JSON.parse(msg.content);
    consumer.ack(msg);
    consumed += 1;
    if (consumed === count) done();
  });

  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  if (mode === 'batch') {
    for (let i = 0; i < count; i += window) {
      for (let j = i; j < Math.min(i + window, count); j += 1) {
        const ok = publisher.publish(queue, 'bench.ping', Buffer.from(payload), { persistent: true, type: 'bench.ping' });
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
      const body = Buffer.from(payload);
      const ok = publisher.publish(queue, 'bench.ping', body, { persistent: true, type: 'bench.ping' }, (err) => {
        if (err) throw err;
        inFlight -= 1;
        if (wake) { const w = wake; wake = null; w(); }
      });
      if (!ok) await new Promise((resolve) => publisher.once('drain', resolve));
    }
  }
  await finished;
  await publisher.waitForConfirms();
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  const cpu = process.cpuUsage(cpuStart);
  process.stdout.write(`${elapsed} ${(cpu.user + cpu.system) / 1000}\n`);
  await connection.close();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
