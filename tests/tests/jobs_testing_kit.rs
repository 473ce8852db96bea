//! `TestJob`: a worker's handler run in a test, without Redis (feature `jobs`).
#![cfg(feature = "jobs")]

use tidings_bridges::jobs::{JobContext, JobFailure, TestJob};

/// A handler as a service writes it: reports, then fails on its first attempt.
async fn build_report(pages: u32, job: JobContext) -> Result<u32, JobFailure> {
    for page in 1..=pages {
        job.progress(page * 100 / pages).await?;
    }
    job.log(&format!("attempt {} of {}", job.attempt(), job.attempts()))
        .await?;
    if job.attempt() == 1 {
        return Err(JobFailure::new("the printer is warming up"));
    }
    Ok(pages)
}

#[tokio::test]
async fn a_handler_runs_on_a_test_job_and_what_it_reported_is_read_back() {
    let first = TestJob::new("reports", "report.build").id("r-1");
    let failed = build_report(4, first.context()).await.unwrap_err();
    assert_eq!(failed.reason(), "the printer is warming up");
    assert_eq!(
        first.progress(),
        [25, 50, 75, 100].map(serde_json::Value::from)
    );
    assert_eq!(first.log(), ["attempt 1 of 1"]);

    let second = TestJob::new("reports", "report.build").attempt(2, 3);
    let context = second.context();
    assert_eq!(
        (context.id(), context.name(), context.attempt()),
        ("1", "report.build", 2)
    );
    assert_eq!(build_report(2, context).await.unwrap(), 2);
    assert_eq!(second.log(), ["attempt 2 of 3"]);
    // Progress as any JSON, as Node's `job.updateProgress({ ... })`.
    second
        .context()
        .progress(serde_json::json!({"stage": "done"}))
        .await
        .unwrap();
    assert_eq!(second.progress().last().unwrap()["stage"], "done");
}
