//! The runtime that the tasks of buses, bridges, actors and reporters are spawned on.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::LocalKey;

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
///
/// A future type of its own rather than an `async fn`: an `async fn` keeps its argument and
/// the pinned copy it polls side by side in its state, which doubled every actor's and async
/// listener's task (900 bytes more per idle actor, `benches/README.md`, "Bytes per idle actor").
pub(crate) fn marked<T, F>(key: &'static LocalKey<Cell<T>>, value: T, task: F) -> Marked<T, F>
where
    T: Copy + 'static,
    F: Future,
{
    Marked { key, value, task }
}

pin_project_lite::pin_project! {
    /// See [`marked`].
    pub(crate) struct Marked<T, F>
    where
        T: 'static,
    {
        key: &'static LocalKey<Cell<T>>,
        value: T,
        #[pin]
        task: F,
    }
}

impl<T: Copy + 'static, F: Future> Future for Marked<T, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        /// Puts back what the key held before the poll.
        struct Restore<T: Copy + 'static>(&'static LocalKey<Cell<T>>, T);
        impl<T: Copy + 'static> Drop for Restore<T> {
            fn drop(&mut self) {
                self.0.with(|cell| cell.set(self.1));
            }
        }
        let this = self.project();
        let key = *this.key;
        let _restore = Restore(key, key.with(|cell| cell.replace(*this.value)));
        this.task.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    use super::marked;

    thread_local! {
        static KEY: Cell<u64> = const { Cell::new(0) };
    }

    /// A task with a large state, such as an actor's run loop.
    async fn large() -> u64 {
        let state = [7u8; 1024];
        tokio::task::yield_now().await;
        u64::from(state[1023])
    }

    #[test]
    fn a_marked_task_is_the_task_and_its_mark_not_two_copies_of_it() {
        let task = large();
        let alone = std::mem::size_of_val(&task);
        let marked = marked(&KEY, 1, large());
        assert!(
            std::mem::size_of_val(&marked) <= alone + 32,
            "{} bytes for a task of {alone}",
            std::mem::size_of_val(&marked)
        );
    }

    #[test]
    fn the_key_holds_the_mark_only_while_the_task_is_polled() {
        let mut task = std::pin::pin!(marked(
            &KEY,
            5,
            std::future::poll_fn(|_| {
                // Inside the poll: the task's own mark.
                assert_eq!(KEY.with(Cell::get), 5);
                Poll::Ready(())
            })
        ));
        KEY.with(|key| key.set(3));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(task.as_mut().poll(&mut cx).is_ready());
        assert_eq!(KEY.with(Cell::get), 3, "what it held before, put back");
    }
}
