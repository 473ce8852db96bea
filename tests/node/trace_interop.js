// A Node service with OpenTelemetry's API, its W3C trace-context propagator and a basic tracer
// provider, as its docs set them up; driven by tests/tests/trace_node.rs.
//
//   node trace_interop.js send <broker> <address> <destination> <json>
//     starts a producer span, injects its context into the message's headers with the
//     propagator, and publishes the object (amqplib to the topic exchange <destination>,
//     kafkajs to the topic, ioredis XADD with a `data` field and the headers as fields);
//     prints { trace, span } of that span. With <broker> `bullmq`, <address> is Redis and
//     <destination> a queue: the object is added as a job named `email.send` by a Queue with
//     BullMQ's own telemetry (bullmq-otel), which stores the context of its `add` span in the
//     job's options; prints { trace, span } of that `add` span
//   node trace_interop.js receive <broker> <address> <destination>
//     prints "ready" once it listens (RabbitMQ: an exclusive queue bound with '#'; Kafka: a
//     group of its own from the beginning; Redis: reads the stream from its start), takes one
//     message, extracts the context from its headers with the propagator, starts a consumer
//     span in it and prints { trace, parent, span } (parent: the span id the message named)
const api = require('@opentelemetry/api');
const { W3CTraceContextPropagator } = require('@opentelemetry/core');
const { BasicTracerProvider } = require('@opentelemetry/sdk-trace-base');
const amqp = require('amqplib');
const { Kafka, logLevel } = require('kafkajs');
const Redis = require('ioredis');

api.propagation.setGlobalPropagator(new W3CTraceContextPropagator());
api.trace.setGlobalTracerProvider(new BasicTracerProvider());
const tracer = api.trace.getTracer('node-interop');

function print(line) {
  process.stdout.write(JSON.stringify(line) + '\n');
}

async function sendJob(address, queueName, text) {
  const { Queue } = require('bullmq');
  const { BullMQOtel } = require('bullmq-otel');
  const { InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
  const exporter = new InMemorySpanExporter();
  api.trace.disable();
  api.trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
  const connection = new Redis(address, { maxRetriesPerRequest: null });
  const queue = new Queue(queueName, { connection, telemetry: new BullMQOtel('node-interop') });
  await queue.add('email.send', JSON.parse(text));
  await queue.close();
  connection.disconnect();
  const add = exporter.getFinishedSpans().find((s) => s.name.startsWith('add '));
  if (!add) throw new Error(`no add span among ${exporter.getFinishedSpans().map((s) => s.name)}`);
  print({ trace: add.spanContext().traceId, span: add.spanContext().spanId });
}

async function send(broker, address, destination, text) {
  if (broker === 'bullmq') return sendJob(address, destination, text);
  const span = tracer.startSpan(`send ${destination}`, { kind: api.SpanKind.PRODUCER });
  const headers = {};
  api.propagation.inject(api.trace.setSpan(api.context.active(), span), headers);
  const body = JSON.stringify(JSON.parse(text));
  if (broker === 'rabbitmq') {
    const connection = await amqp.connect(address);
    const channel = await connection.createConfirmChannel();
    channel.publish(destination, 'node', Buffer.from(body), { persistent: true, headers });
    await channel.waitForConfirms();
    await connection.close();
  } else if (broker === 'kafka') {
    const producer = new Kafka({ clientId: 'node-trace', brokers: [address], logLevel: logLevel.NOTHING }).producer();
    await producer.connect();
    await producer.send({ topic: destination, acks: -1, messages: [{ value: body, headers }] });
    await producer.disconnect();
  } else {
    const redis = new Redis(address);
    const fields = ['data', body];
    for (const [name, value] of Object.entries(headers)) fields.push(name, value);
    await redis.xadd(destination, '*', ...fields);
    redis.disconnect();
  }
  span.end();
  print({ trace: span.spanContext().traceId, span: span.spanContext().spanId });
}

function handled(headers) {
  const parent = api.propagation.extract(api.ROOT_CONTEXT, headers);
  const named = api.trace.getSpanContext(parent);
  const span = tracer.startSpan('process', { kind: api.SpanKind.CONSUMER }, parent);
  span.end();
  print({ trace: span.spanContext().traceId, parent: named && named.spanId, span: span.spanContext().spanId });
}

async function receive(broker, address, destination) {
  if (broker === 'rabbitmq') {
    const connection = await amqp.connect(address);
    const channel = await connection.createChannel();
    await channel.assertExchange(destination, 'topic', { durable: true });
    const q = await channel.assertQueue('', { exclusive: true });
    await channel.bindQueue(q.queue, destination, '#');
    await channel.consume(q.queue, (msg) => {
      channel.ack(msg);
      const headers = {};
      for (const [name, value] of Object.entries(msg.properties.headers || {})) headers[name] = String(value);
      handled(headers);
      setImmediate(() => connection.close().then(() => process.exit(0)));
    });
    process.stdout.write('ready\n');
  } else if (broker === 'kafka') {
    const consumer = new Kafka({ clientId: 'node-trace', brokers: [address], logLevel: logLevel.NOTHING })
      .consumer({ groupId: `node-trace-${process.pid}`, sessionTimeout: 6000, heartbeatInterval: 2000 });
    await consumer.connect();
    await consumer.subscribe({ topic: destination, fromBeginning: true });
    consumer.on(consumer.events.GROUP_JOIN, () => process.stdout.write('ready\n'));
    await consumer.run({
      eachMessage: async ({ message }) => {
        const headers = {};
        for (const [name, value] of Object.entries(message.headers || {})) headers[name] = value.toString();
        handled(headers);
        setImmediate(() => consumer.disconnect().then(() => process.exit(0)));
      },
    });
  } else {
    const redis = new Redis(address);
    process.stdout.write('ready\n');
    for (;;) {
      const reply = await redis.xread('COUNT', 1, 'BLOCK', 1000, 'STREAMS', destination, '0');
      if (!reply) continue;
      const [, entries] = reply[0];
      const fields = entries[0][1];
      const headers = {};
      for (let i = 0; i + 1 < fields.length; i += 2) headers[fields[i]] = fields[i + 1];
      handled(headers);
      redis.disconnect();
      return;
    }
  }
}

const [mode, broker, address, destination, text] = process.argv.slice(2);
(mode === 'send' ? send(broker, address, destination, text) : receive(broker, address, destination))
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });
