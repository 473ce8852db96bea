//! [`BridgeTask`]: the one background task behind an `Inbound` or an `Outbound`, and how
//! both stop it: wait up to the deadline, then abort. Dropping the handle aborts it.

use std::time::Duration;

use tokio::task::JoinHandle;

pub(super) struct BridgeTask(Option<JoinHandle<()>>);

impl BridgeTask {
    pub(super) fn new(handle: JoinHandle<()>) -> Self {
        BridgeTask(Some(handle))
    }

    /// Waits up to `deadline` for the task to end by itself, then aborts it (and waits for
    /// the abort to take effect). Returns whether it ended in time.
    pub(super) async fn stop(&mut self, deadline: Duration) -> bool {
        let Some(mut task) = self.0.take() else {
            return true;
        };
        if tokio::time::timeout(deadline, &mut task).await.is_ok() {
            return true;
        }
        task.abort();
        let _ = task.await;
        false
    }

    /// Whether the task is still held (neither stopped nor aborted).
    pub(super) fn is_running(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for BridgeTask {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}
