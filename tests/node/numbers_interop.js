// A Node service that sends and reads numbers the way Node does (JSON.stringify, JSON.parse),
// through each broker's usual Node client, driven by tests/tests/*_numbers.rs.
//
//   node numbers_interop.js produce <kind> <url> <destination> <file>
//     reads one JSON object per line of <file> with JSON.parse, and sends JSON.stringify(obj)
//     of each: amqp sendToQueue (confirm channel), kafka producer.send (acks -1, one batch),
//     redis xadd(stream, '*', 'data', ...), jobs queue.add('reading.taken', obj)
//   node numbers_interop.js consume <kind> <url> <source> <count>
//     prints "ready", then for each message one line { seq, value, tenth, third, big }, each
//     number as the 16 hex digits of the double JSON.parse made of it, and exits after <count>
//       amqp: binds an exclusive queue to the topic exchange <source> ('#')
//       kafka: joins group "node-numbers" on topic <source> from the beginning
//       redis: group "node-numbers" on stream <source> from the start
//       jobs: a bullmq Worker on queue <source>
'use strict';

const fs = require('fs');

const FIELDS = ['value', 'tenth', 'third', 'big'];

function bits(x) {
  const buffer = Buffer.alloc(8);
  buffer.writeDoubleBE(x);
  return buffer.toString('hex');
}

function report(obj) {
  const line = { seq: obj.seq };
  for (const field of FIELDS) line[field] = bits(obj[field]);
  process.stdout.write(JSON.stringify(line) + '\n');
}

async function produce(kind, url, destination, file) {
  const objects = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l).map((l) => JSON.parse(l));
  const texts = objects.map((obj) => JSON.stringify(obj));
  if (kind === 'amqp') {
    const amqp = require('amqplib');
    const connection = await amqp.connect(url);
    const channel = await connection.createConfirmChannel();
    for (const text of texts) channel.sendToQueue(destination, Buffer.from(text), { persistent: true });
    await channel.waitForConfirms();
    await connection.close();
  } else if (kind === 'kafka') {
    const { Kafka, logLevel } = require('kafkajs');
    const producer = new Kafka({ clientId: 'node-numbers', brokers: [url], logLevel: logLevel.NOTHING }).producer();
    await producer.connect();
    await producer.send({ topic: destination, acks: -1, messages: texts.map((value) => ({ value })) });
    await producer.disconnect();
  } else if (kind === 'redis') {
    const Redis = require('ioredis');
    const redis = new Redis(url);
    const pipeline = redis.pipeline();
    for (const text of texts) pipeline.xadd(destination, '*', 'data', text);
    for (const [error] of await pipeline.exec()) if (error) throw error;
    redis.disconnect();
  } else if (kind === 'jobs') {
    const { Queue } = require('bullmq');
    const IORedis = require('ioredis');
    const connection = new IORedis(url, { maxRetriesPerRequest: null });
    const queue = new Queue(destination, { connection });
    // bullmq stores JSON.stringify(data).
    await queue.addBulk(objects.map((data) => ({ name: 'reading.taken', data })));
    await queue.close();
    connection.disconnect();
  } else {
    throw new Error(`unknown kind ${kind}`);
  }
}

async function consume(kind, url, source, count) {
  let seen = 0;
  let finish;
  const done = new Promise((resolve) => {
    finish = resolve;
  });
  const take = (obj) => {
    report(obj);
    seen += 1;
    if (seen === count) finish();
  };
  if (kind === 'amqp') {
    const amqp = require('amqplib');
    const connection = await amqp.connect(url);
    const channel = await connection.createChannel();
    await channel.assertExchange(source, 'topic', { durable: true });
    const q = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(q.queue, source, '#');
    await channel.prefetch(100);
    await channel.consume(q.queue, (msg) => {
      take(JSON.parse(msg.content));
      channel.ack(msg);
    });
    process.stdout.write('ready\n');
    await done;
    await connection.close();
  } else if (kind === 'kafka') {
    const { Kafka, logLevel } = require('kafkajs');
    const consumer = new Kafka({ clientId: 'node-numbers', brokers: [url], logLevel: logLevel.NOTHING })
      .consumer({ groupId: 'node-numbers', sessionTimeout: 6000, heartbeatInterval: 2000 });
    await consumer.connect();
    await consumer.subscribe({ topic: source, fromBeginning: true });
    consumer.on(consumer.events.GROUP_JOIN, () => process.stdout.write('ready\n'));
    await consumer.run({ eachMessage: async ({ message }) => take(JSON.parse(message.value.toString())) });
    await done;
    await consumer.disconnect();
  } else if (kind === 'redis') {
    const Redis = require('ioredis');
    const redis = new Redis(url);
    try {
      await redis.xgroup('CREATE', source, 'node-numbers', '0', 'MKSTREAM');
    } catch (error) {
      if (!String(error).includes('BUSYGROUP')) throw error;
    }
    process.stdout.write('ready\n');
    while (seen < count) {
      const reply = await redis.xreadgroup('GROUP', 'node-numbers', 'node-1', 'COUNT', 500, 'BLOCK', 1000, 'STREAMS', source, '>');
      if (!reply) continue;
      for (const [, entries] of reply) {
        for (const [id, flat] of entries) {
          const fields = {};
          for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
          take(JSON.parse(fields.data));
          await redis.xack(source, 'node-numbers', id);
        }
      }
    }
    redis.disconnect();
  } else if (kind === 'jobs') {
    const { Worker } = require('bullmq');
    const IORedis = require('ioredis');
    const connection = new IORedis(url, { maxRetriesPerRequest: null });
    const worker = new Worker(source, async (job) => take(job.data), { connection, concurrency: 1 });
    process.stdout.write('ready\n');
    await done;
    await worker.close();
    connection.disconnect();
  } else {
    throw new Error(`unknown kind ${kind}`);
  }
}

const [mode, kind, url, name, arg] = process.argv.slice(2);
const run = mode === 'produce' ? produce(kind, url, name, arg) : consume(kind, url, name, Number(arg));
run.then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
