// A Node service using bullmq (and Bull Board) as their docs do, for the job-queue
// interoperability tests.
//
//   node jobs_interop.js produce <redis-url> <queue> <n>   adds n jobs, prints each result
//   node jobs_interop.js work <redis-url> <queue> <n>      processes n jobs, then exits
//   node jobs_interop.js share <redis-url> <queue> <total> works until total are completed
//   node jobs_interop.js board <redis-url> <queue> <port>  serves Bull Board on 127.0.0.1
'use strict';

const { Queue, Worker, QueueEvents } = require('bullmq');
const IORedis = require('ioredis');

const [, , mode, url, name, arg] = process.argv;
const connection = () => new IORedis(url, { maxRetriesPerRequest: null });

async function produce(n) {
  const queue = new Queue(name, { connection: connection() });
  const events = new QueueEvents(name, { connection: connection() });
  await events.waitUntilReady();
  const jobs = [];
  for (let i = 0; i < n; i++) {
    jobs.push(
      await queue.add(
        'email.send',
        { n: i, to: `node${i}@example.com` },
        { attempts: 3, backoff: { type: 'exponential', delay: 100 }, priority: 1 + i },
      ),
    );
  }
  for (const job of jobs) {
    const result = await job.waitUntilFinished(events, 30000);
    console.log(JSON.stringify({ id: job.id, result }));
  }
  await events.close();
  await queue.close();
}

async function work(n) {
  let done = 0;
  const worker = new Worker(
    name,
    async (job) => {
      await job.updateProgress(50);
      await job.log(`node took ${job.id}`);
      return { by: 'node', n: job.data.n, attempt: job.attemptsMade + 1 };
    },
    { connection: connection(), concurrency: 5 },
  );
  await new Promise((resolve) => {
    worker.on('completed', () => {
      done += 1;
      if (done === n) resolve();
    });
  });
  await worker.close();
  console.log('done');
}

async function share(total) {
  const queue = new Queue(name, { connection: connection() });
  let handled = 0;
  const worker = new Worker(
    name,
    async (job) => {
      handled += 1;
      await new Promise((r) => setTimeout(r, 1));
      return { by: 'node', n: job.data.n };
    },
    { connection: connection(), concurrency: 5 },
  );
  console.log('ready');
  for (;;) {
    const counts = await queue.getJobCounts('completed');
    if (counts.completed >= total) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  await worker.close();
  await queue.close();
  console.log(`handled ${handled}`);
}

async function board(port) {
  const express = require('express');
  const { createBullBoard } = require('@bull-board/api');
  const { BullMQAdapter } = require('@bull-board/api/bullMQAdapter');
  const { ExpressAdapter } = require('@bull-board/express');
  const adapter = new ExpressAdapter();
  adapter.setBasePath('/');
  createBullBoard({
    queues: [new BullMQAdapter(new Queue(name, { connection: connection() }))],
    serverAdapter: adapter,
  });
  const app = express();
  app.use('/', adapter.getRouter());
  app.listen(Number(port), '127.0.0.1', () => console.log('listening'));
}

const modes = { produce, work, share, board };
// The connections passed in stay open after close (BullMQ leaves shared connections to their
// owner): exit once done, except for the board, which serves until killed.
modes[mode](Number(arg) || arg).then(
  () => {
    if (mode !== 'board') process.exit(0);
  },
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
