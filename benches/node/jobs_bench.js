// The Node peers of benches/jobs.rs: add `count` jobs (attempts 3, exponential backoff) in
// bulk batches of 1000, process them with concurrency 10 in the same process, and print the
// elapsed milliseconds from the first add to the last completion and the CPU milliseconds used
// meanwhile. Written as each library's docs recommend.
//
//   node jobs_bench.js <bullmq|bull> <redis-url> <queue> <count>
'use strict';

const [kind, url, name, countText] = process.argv.slice(2);
const count = Number(countText);
const options = { attempts: 3, backoff: { type: 'exponential', delay: 1000 } };
const payload = (n) => ({ n, to: `user${n}@example.com`, subject: 'Welcome' });

// Counts completions; `finished` resolves at the last one.
function completions() {
  let done = 0;
  let finish;
  const finished = new Promise((resolve) => { finish = resolve; });
  const completed = () => {
    done += 1;
    if (done === count) finish();
  };
  return { finished, completed };
}

// Adds every job in bulks of 1000 and waits for `finished`, then until Redis has recorded
// every completion (`counted`, as the Rust contenders do); prints the time and CPU used.
async function measure(queue, finished, counted) {
  const start = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  for (let i = 0; i < count; i += 1000) {
    const jobs = [];
    for (let n = i; n < Math.min(i + 1000, count); n++) {
      jobs.push({ name: 'email.send', data: payload(n), opts: options });
    }
    await queue.addBulk(jobs);
  }
  await finished;
  while ((await counted()) < count);
  const elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  const used = process.cpuUsage(cpu);
  console.log(`${elapsed.toFixed(1)} ${((used.user + used.system) / 1000).toFixed(1)}`);
}

async function bullmq() {
  const { Queue, Worker } = require('bullmq');
  const IORedis = require('ioredis');
  const connection = new IORedis(url, { maxRetriesPerRequest: null });
  const queue = new Queue(name, { connection });
  const { finished, completed } = completions();
  const worker = new Worker(
    name,
    async (job) => ({ sent: job.data.to }),
    { connection: new IORedis(url, { maxRetriesPerRequest: null }), concurrency: 10 },
  );
  worker.on('completed', completed);
  await worker.waitUntilReady();
  await measure(queue, finished, async () => (await queue.getJobCounts('completed')).completed);
  await worker.close();
  await queue.obliterate({ force: true });
  process.exit(0);
}

async function bull() {
  const Queue = require('bull');
  const queue = new Queue(name, url);
  const { finished, completed } = completions();
  queue.process('email.send', 10, async (job) => ({ sent: job.data.to }));
  queue.on('completed', completed);
  await queue.isReady();
  await measure(queue, finished, () => queue.getCompletedCount());
  await queue.obliterate({ force: true });
  process.exit(0);
}

({ bullmq, bull })[kind]().catch((e) => {
  console.error(e);
  process.exit(1);
});
