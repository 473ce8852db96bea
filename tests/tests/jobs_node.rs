//! Interoperability with Node's `bullmq` (feature `jobs`): a Node producer's jobs run on a
//! tidings worker, a tidings producer's jobs on a Node worker, one queue shared by a Node and
//! a Rust worker, and Bull Board showing a queue tidings filled, loaded in headless Chromium.
//! Needs `node` and `npm` (bullmq and Bull Board are installed into `tests/node` when
//! missing) and `chromium`.
#![cfg(feature = "jobs")]

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tidings::Event;
use tidings_bridges::jobs::{JobFailure, JobOptions, JobQueue, JobState, Worker};
use tidings_tests::node_project;
use tidings_tests::redis::{QueueKeys, URL, unique};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(name = "email.send")]
struct Email {
    n: u64,
    to: String,
}

fn node(dir: &std::path::Path, args: &[&str]) -> Command {
    let mut command = tidings_tests::node_script(dir, "jobs_interop.js", args);
    command.stdout(Stdio::piped());
    command
}

async fn queue() -> (JobQueue<Email>, QueueKeys) {
    let name = unique("jobs-node");
    let queue = JobQueue::<Email>::builder(URL, name.clone())
        .connect()
        .await
        .expect("Redis on 127.0.0.1:6379");
    (queue, QueueKeys(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_producers_jobs_run_on_a_tidings_worker() {
    let dir = node_project("bullmq").await;
    let (q, _keys) = queue().await;
    // The first attempt of job 0 fails: Node's attempts and backoff options hold.
    let worker = Worker::<Email>::builder(URL, q.name())
        .concurrency(2)
        .start(|email: Email, job| async move {
            if email.n == 0 && job.attempt() == 1 {
                return Err(JobFailure::new("first try fails"));
            }
            assert_eq!((job.name(), job.attempts()), ("email.send", 3));
            Ok(json!({"by": "tidings", "n": email.n, "to": email.to, "attempt": job.attempt()}))
        })
        .await
        .expect("worker");
    let output = tokio::time::timeout(WAIT, node(&dir, &["produce", URL, q.name(), "4"]).output())
        .await
        .expect("the Node producer finished")
        .expect("node");
    assert!(output.status.success(), "the Node producer failed");
    let results: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON"))
        .collect();
    assert_eq!(results.len(), 4);
    for (n, line) in results.iter().enumerate() {
        let attempt = if n == 0 { 2 } else { 1 };
        assert_eq!(
            line["result"],
            json!({"by": "tidings", "n": n, "to": format!("node{n}@example.com"), "attempt": attempt}),
            "Node reads the return value"
        );
    }
    worker.shutdown(WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tidings_producers_jobs_run_on_a_node_worker() {
    let dir = node_project("bullmq").await;
    let (q, _keys) = queue().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let options = JobOptions::new().priority(1 + n as u32).attempts(2);
        ids.push(
            q.add_with(
                &Email {
                    n,
                    to: format!("rust{n}@example.com"),
                },
                &options,
            )
            .await
            .unwrap(),
        );
    }
    let output = tokio::time::timeout(WAIT, node(&dir, &["work", URL, q.name(), "5"]).output())
        .await
        .expect("the Node worker finished")
        .expect("node");
    assert!(output.status.success(), "the Node worker failed");
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(q.state(id).await.unwrap(), Some(JobState::Completed));
        let record = q.get(id).await.unwrap().unwrap();
        assert_eq!(
            record.return_value,
            Some(json!({"by": "node", "n": n, "attempt": 1}))
        );
        assert_eq!(record.progress, json!(50));
        assert_eq!(record.attempts_made, 1);
        assert_eq!(q.logs(id).await.unwrap(), [format!("node took {id}")]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_and_a_rust_worker_share_a_queue() {
    const JOBS: u64 = 400;
    let dir = node_project("bullmq").await;
    let (q, _keys) = queue().await;
    let jobs: Vec<Email> = (0..JOBS)
        .map(|n| Email {
            n,
            to: format!("shared{n}@example.com"),
        })
        .collect();
    q.add_bulk(jobs.iter().map(|j| (j, JobOptions::new())))
        .await
        .unwrap();
    let mut child = node(&dir, &["share", URL, q.name(), &JOBS.to_string()])
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(
        lines.next_line().await.unwrap().as_deref(),
        Some("ready"),
        "the Node worker started"
    );
    let handled = Arc::new(AtomicUsize::new(0));
    let h = handled.clone();
    let worker = Worker::<Email>::builder(URL, q.name())
        .concurrency(5)
        .start(move |email: Email, _| {
            h.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok::<_, JobFailure>(json!({"by": "tidings", "n": email.n}))
            }
        })
        .await
        .expect("worker");
    let last = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the Node worker finished")
        .unwrap()
        .expect("a line");
    let by_node: usize = last
        .strip_prefix("handled ")
        .expect("a count")
        .parse()
        .unwrap();
    worker.shutdown(WAIT).await;
    let by_rust = handled.load(Ordering::SeqCst);
    assert_eq!(by_node + by_rust, JOBS as usize, "each job ran once");
    assert!(
        by_node > 0 && by_rust > 0,
        "both worked: node {by_node}, rust {by_rust}"
    );
    let records = q.jobs(JobState::Completed, 0..JOBS as usize).await.unwrap();
    let mut seen: Vec<u64> = records
        .iter()
        .map(|r| {
            let value = r.return_value.as_ref().expect("a result");
            assert!(value["by"] == "node" || value["by"] == "tidings");
            value["n"].as_u64().unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..JOBS).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bull_board_shows_a_queue_tidings_filled() {
    let dir = node_project("@bull-board/express").await;
    let (q, _keys) = queue().await;
    // Two completed, one failed, three waiting, one delayed.
    let worker = Worker::<Email>::builder(URL, q.name())
        .start(|email: Email, _| async move {
            if email.n == 2 {
                Err(JobFailure::fatal("mailbox full"))
            } else {
                Ok(json!({"sent": email.n}))
            }
        })
        .await
        .expect("worker");
    for n in 0..3 {
        q.add(&Email {
            n,
            to: format!("board{n}@example.com"),
        })
        .await
        .unwrap();
    }
    let start = Instant::now();
    while q.counts().await.unwrap().completed + q.counts().await.unwrap().failed < 3 {
        assert!(start.elapsed() < WAIT, "three jobs finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown(WAIT).await;
    for n in 3..6 {
        q.add(&Email {
            n,
            to: format!("board{n}@example.com"),
        })
        .await
        .unwrap();
    }
    q.add_with(
        &Email {
            n: 6,
            to: "later@example.com".into(),
        },
        &JobOptions::new().delay(Duration::from_secs(3600)),
    )
    .await
    .unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let mut board = node(&dir, &["board", URL, q.name(), &port.to_string()])
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(board.stdout.take().expect("stdout")).lines();
    assert_eq!(
        tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .as_deref(),
        Some("listening")
    );

    // The queue's page, all states ("latest"), rendered by Chromium.
    let url = format!("http://127.0.0.1:{port}/queue/{}?status=latest", q.name());
    let shot = std::env::temp_dir().join(format!("{}.png", q.name()));
    let chromium = |extra: &[&str]| {
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .args(["--virtual-time-budget=15000", "--window-size=1400,2000"])
            .args(extra)
            .arg(&url)
            .stderr(Stdio::null())
            .kill_on_drop(true);
        command
    };
    let dom = tokio::time::timeout(WAIT, chromium(&["--dump-dom"]).output())
        .await
        .expect("Chromium finished")
        .expect("chromium must be installed");
    assert!(dom.status.success());
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    let screenshot = format!("--screenshot={}", shot.display());
    let status = tokio::time::timeout(WAIT, chromium(&[&screenshot]).status())
        .await
        .expect("Chromium finished")
        .expect("chromium");
    assert!(status.success());
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false)
    );
    eprintln!("Bull Board screenshot: {}", shot.display());

    assert!(dom.contains(q.name()), "the queue is listed");
    assert!(dom.contains("email.send"), "its jobs are listed by name");
    // Every tab is always there; the count on each is what the queue holds.
    let counts: Vec<(&str, Option<u64>)> = ["ACTIVE", "WAITING", "COMPLETED", "FAILED", "DELAYED"]
        .into_iter()
        .map(|state| (state, badge(&dom, state)))
        .collect();
    assert_eq!(
        counts,
        [
            ("ACTIVE", None),
            ("WAITING", Some(3)),
            ("COMPLETED", Some(2)),
            ("FAILED", Some(1)),
            ("DELAYED", Some(1)),
        ],
        "the counts Bull Board shows"
    );
    assert!(dom.contains("mailbox full"), "the failure reason is shown");
    // The data of every job but the failed one (whose error is shown instead).
    for to in [0, 1, 3, 4, 5]
        .map(|n| format!("board{n}@example.com"))
        .into_iter()
        .chain(["later@example.com".to_owned()])
    {
        assert!(dom.contains(&to), "the data of the job to {to} is shown");
    }
}

/// The count Bull Board shows on the tab of `state` (`WAITING`...), if any.
fn badge(dom: &str, state: &str) -> Option<u64> {
    let tab = format!("data-text=\"{state}\">{state}</span>");
    let after = &dom[dom.find(&tab).unwrap_or_else(|| panic!("no tab {state}")) + tab.len()..];
    let badge = after.strip_prefix("<span class=\"badge")?;
    let count = &badge[badge.find('>')? + 1..];
    count[..count.find('<')?].parse().ok()
}
