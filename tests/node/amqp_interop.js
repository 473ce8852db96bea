// A Node service written the way amqplib's tutorials write it, driven by tests/tests/amqp_node.rs.
//
//   node amqp_interop.js produce <url> <queue> <exchange> <routing-key> <json>...
//     sends each JSON object with sendToQueue(queue) and again with publish(exchange, key)
//   node amqp_interop.js consume <url> <exchange> <pattern> <count>
//     binds an exclusive queue to the topic exchange, prints "ready", then one JSON line per
//     message: { body: JSON.parse(content), type, messageId, persistent }
//   node amqp_interop.js assert-bounded <url> <queue> <dead-letter-exchange>
//     asserts a durable queue of one message at most that refuses publishes beyond it
//   node amqp_interop.js produce-deep <url> <queue> <depth> <json>...
//     sends each JSON object with sendToQueue(queue), the first with a header `deep` holding
//     objects nested <depth> levels deep (amqplib encodes them as nested field tables)
const amqp = require('amqplib');

async function produceDeep(url, queue, depth, objects) {
  let deep = { leaf: 1 };
  for (let i = 1; i < depth; i++) {
    deep = { n: deep };
  }
  const connection = await amqp.connect(url);
  const channel = await connection.createConfirmChannel();
  objects.forEach((text, i) => {
    const headers = i === 0 ? { deep, plain: 'kept' } : {};
    channel.sendToQueue(queue, Buffer.from(text), { persistent: true, type: 'ping', headers });
  });
  await channel.waitForConfirms();
  await connection.close();
}

async function assertBounded(url, queue, deadLetterExchange) {
  const connection = await amqp.connect(url);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, {
    durable: true,
    maxLength: 1,
    messageTtl: 60000,
    deadLetterExchange,
    arguments: { 'x-overflow': 'reject-publish' },
  });
  await connection.close();
}

async function produce(url, queue, exchange, key, objects) {
  const connection = await amqp.connect(url);
  const channel = await connection.createConfirmChannel();
  await channel.assertQueue(queue, { durable: true });
  await channel.assertExchange(exchange, 'topic', { durable: true });
  for (const text of objects) {
    const obj = JSON.parse(text);
    channel.sendToQueue(queue, Buffer.from(JSON.stringify(obj)), { persistent: true });
    channel.publish(exchange, key, Buffer.from(JSON.stringify(obj)), { persistent: true });
  }
  await channel.waitForConfirms();
  await connection.close();
}

async function consume(url, exchange, pattern, count) {
  const connection = await amqp.connect(url);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: true });
  const q = await channel.assertQueue('', { exclusive: true });
  await channel.bindQueue(q.queue, exchange, pattern);
  let seen = 0;
  await channel.consume(q.queue, (msg) => {
    const line = {
      body: JSON.parse(msg.content),
      type: msg.properties.type,
      messageId: msg.properties.messageId,
      persistent: msg.properties.deliveryMode === 2,
    };
    process.stdout.write(JSON.stringify(line) + '\n');
    channel.ack(msg);
    seen += 1;
    if (seen === count) {
      connection.close().then(() => process.exit(0));
    }
  });
  process.stdout.write('ready\n');
}

const [mode, url, ...rest] = process.argv.slice(2);
const run = mode === 'produce'
  ? produce(url, rest[0], rest[1], rest[2], rest.slice(3))
  : mode === 'assert-bounded'
    ? assertBounded(url, rest[0], rest[1])
    : mode === 'produce-deep'
      ? produceDeep(url, rest[0], Number(rest[1]), rest.slice(2))
      : consume(url, rest[0], rest[1], Number(rest[2]));
run.catch((error) => {
  console.error(error);
  process.exit(1);
});
