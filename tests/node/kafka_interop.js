// A Node service written the way kafkajs's docs write it, driven by tests/tests/kafka_node.rs.
//
//   node kafka_interop.js produce <brokers> <topic> <json>...
//     producer.send({ topic, messages: [{ key, value: JSON.stringify(obj), headers }] }),
//     the key from obj.id, one header of its own (x-origin: node), no type header
//   node kafka_interop.js consume <brokers> <topic> <group> <count>
//     joins the group from the beginning, prints "ready" once it has its partitions, then one
//     JSON line per message: { value: JSON.parse(message.value.toString()), key, headers }
const { Kafka, logLevel } = require('kafkajs');

function client(brokers) {
  return new Kafka({ clientId: 'node-interop', brokers: [brokers], logLevel: logLevel.NOTHING });
}

async function produce(brokers, topic, objects) {
  const producer = client(brokers).producer();
  await producer.connect();
  await producer.send({
    topic,
    acks: -1,
    messages: objects.map((text) => {
      const obj = JSON.parse(text);
      return { key: String(obj.id), value: JSON.stringify(obj), headers: { 'x-origin': 'node' } };
    }),
  });
  await producer.disconnect();
}

async function consume(brokers, topic, group, count) {
  const consumer = client(brokers).consumer({ groupId: group, sessionTimeout: 6000, heartbeatInterval: 2000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  consumer.on(consumer.events.GROUP_JOIN, () => process.stdout.write('ready\n'));
  let seen = 0;
  await consumer.run({
    eachMessage: async ({ message }) => {
      const headers = {};
      for (const [name, value] of Object.entries(message.headers || {})) {
        headers[name] = value.toString();
      }
      const line = {
        value: JSON.parse(message.value.toString()),
        key: message.key && message.key.toString(),
        headers,
      };
      process.stdout.write(JSON.stringify(line) + '\n');
      seen += 1;
      if (seen === count) {
        setImmediate(() => consumer.disconnect().then(() => process.exit(0)));
      }
    },
  });
}

const [mode, brokers, ...rest] = process.argv.slice(2);
const run = mode === 'produce'
  ? produce(brokers, rest[0], rest.slice(1))
  : consume(brokers, rest[0], rest[1], Number(rest[2]));
run.catch((error) => {
  console.error(error);
  process.exit(1);
});
