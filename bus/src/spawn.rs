//! The runtime that the tasks of buses, bridges, actors and reporters are spawned on.

/// The tokio runtime to spawn `what` on; panics with a clear message outside of one.
#[track_caller]
pub(crate) fn runtime(what: &str) -> tokio::runtime::Handle {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle,
        Err(_) => panic!("{what} run as tokio tasks: call this inside a tokio runtime"),
    }
}

/// Runs `task` with `key` holding `value` on the thread polling it, during each poll (what
/// it held before is put back after the poll, also when the poll unwinds): code running inside
/// the task can tell which task it is in. That is how a wait that only the task itself could
/// end is told apart (an async listener waiting for its own queue, an actor asking itself).
/// Costs two thread-local writes per poll, not per message.
pub(crate) async fn marked<T, F>(
    key: &'static std::thread::LocalKey<std::cell::Cell<T>>,
    value: T,
    task: F,
) -> F::Output
where
    T: Copy + 'static,
    F: std::future::Future,
{
    /// Puts back what the key held before the poll.
    struct Restore<T: Copy + 'static>(&'static std::thread::LocalKey<std::cell::Cell<T>>, T);
    impl<T: Copy + 'static> Drop for Restore<T> {
        fn drop(&mut self) {
            self.0.with(|cell| cell.set(self.1));
        }
    }
    let mut task = std::pin::pin!(task);
    std::future::poll_fn(|cx| {
        let _restore = Restore(key, key.with(|cell| cell.replace(value)));
        task.as_mut().poll(cx)
    })
    .await
}
