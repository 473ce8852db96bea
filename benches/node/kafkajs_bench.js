// The kafkajs peer of benches/kafka.rs, written for throughput: produce `count` messages to
// `topic` in batches of `batch` with acks=-1 (all), several batches in flight, while a consumer
// group reads them from the beginning with eachBatch (resolving offsets as it goes, autocommit
// on); print the elapsed milliseconds from the first send to the last message handled and the
// CPU milliseconds used meanwhile.
//
//   node kafkajs_bench.js <brokers> <topic> <group> <count> <batch> <payload-json> <max-wait-ms> [publish]
//
// With `publish` last, it only produces the messages (the bench reads them back to check that
// they are what tidings sends) and prints nothing.
//
// Each message is the payload with its own `seq`, encoded as it is sent, with the six headers
// tidings' Kafka transport writes (the CloudEvents Kafka binding), as the rdkafka peer sends.
const { randomUUID } = require('crypto');
const { Kafka, logLevel } = require('kafkajs');

function headers() {
  return {
    ce_id: randomUUID(),
    ce_source: 'tidings',
    ce_specversion: '1.0',
    ce_time: new Date().toISOString(),
    'content-type': 'application/json',
    ce_type: 'bench.ping',
  };
}

async function main() {
  const [brokers, topic, group, countText, batchText, payload, maxWait, mode] = process.argv.slice(2);
  const count = Number(countText);
  const batch = Number(batchText);
  const template = JSON.parse(payload);
  const kafka = new Kafka({ clientId: 'kafkajs-bench', brokers: [brokers], logLevel: logLevel.NOTHING });
  const message = (j) => ({
    key: `k${j % 64}`,
    value: JSON.stringify({ ...template, seq: j, key: `k${j % 64}` }),
    headers: headers(),
  });
  if (mode === 'publish') {
    const producer = kafka.producer();
    await producer.connect();
    const messages = [];
    for (let j = 0; j < count; j += 1) messages.push(message(j));
    await producer.send({ topic, acks: -1, messages });
    await producer.disconnect();
    return;
  }
  // maxWaitTimeInMs: see FETCH_WAIT_MS in benches/kafka.rs (tansu holds a fetch for half of it).
  const consumer = kafka.consumer({
    groupId: group, sessionTimeout: 6000, heartbeatInterval: 2000, maxWaitTimeInMs: Number(maxWait),
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let consumed = 0;
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  const joined = new Promise((resolve) => consumer.on(consumer.events.GROUP_JOIN, resolve));
  await consumer.run({
    eachBatchAutoResolve: true,
    eachBatch: async ({ batch: b }) => {
      for (const message of b.messages) {
        JSON.parse(message.value.toString());
      }
      consumed += b.messages.length;
      if (consumed >= count) done();
    },
  });
  await joined;

  const producer = kafka.producer();
  await producer.connect();
  const start = process.hrtime.bigint();
  const cpuStart = process.cpuUsage();
  const inFlight = [];
  for (let i = 0; i < count; i += batch) {
    const messages = [];
    for (let j = i; j < Math.min(i + batch, count); j += 1) {
      messages.push(message(j));
    }
    inFlight.push(producer.send({ topic, acks: -1, messages }));
    if (inFlight.length >= 4) await inFlight.shift();
  }
  await Promise.all(inFlight);
  await finished;
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  const cpu = process.cpuUsage(cpuStart);
  process.stdout.write(`${elapsed} ${(cpu.user + cpu.system) / 1000}\n`);
  await producer.disconnect();
  await consumer.disconnect();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
