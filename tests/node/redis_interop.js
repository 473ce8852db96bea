// A Node service using ioredis with streams as its docs do, driven by tests/tests/redis_node.rs.
//
//   node redis_interop.js produce <url> <stream> <json>...
//     xadd(stream, '*', 'data', JSON.stringify(obj)) for each object
//   node redis_interop.js consume <url> <stream> <group> <count>
//     creates the group (from the start), prints "ready", then one JSON line per entry:
//     { data: JSON.parse(fields.data), type, id, partitionkey }, acknowledging each
const Redis = require('ioredis');

async function produce(url, stream, objects) {
  const redis = new Redis(url);
  for (const text of objects) {
    await redis.xadd(stream, '*', 'data', JSON.stringify(JSON.parse(text)));
  }
  redis.disconnect();
}

async function consume(url, stream, group, count) {
  const redis = new Redis(url);
  try {
    await redis.xgroup('CREATE', stream, group, '0', 'MKSTREAM');
  } catch (error) {
    if (!String(error).includes('BUSYGROUP')) throw error;
  }
  process.stdout.write('ready\n');
  let seen = 0;
  while (seen < count) {
    const reply = await redis.xreadgroup('GROUP', group, 'node-1', 'COUNT', 10, 'BLOCK', 1000, 'STREAMS', stream, '>');
    if (!reply) continue;
    for (const [, entries] of reply) {
      for (const [id, flat] of entries) {
        const fields = {};
        for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]] = flat[i + 1];
        const line = { data: JSON.parse(fields.data), type: fields.type, id: fields.id, partitionkey: fields.partitionkey };
        process.stdout.write(JSON.stringify(line) + '\n');
        await redis.xack(stream, group, id);
        seen += 1;
      }
    }
  }
  redis.disconnect();
}

const [mode, url, ...rest] = process.argv.slice(2);
const run = mode === 'produce'
  ? produce(url, rest[0], rest.slice(1))
  : consume(url, rest[0], rest[1], Number(rest[2]));
run.catch((error) => {
  console.error(error);
  process.exit(1);
});
