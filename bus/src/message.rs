//! [`MessageContext`]: the broker message behind the event a listener is handling.
//!
//! When an inbound bridge emits a message's event into a bus, every listener that handles it
//! (sync listeners inside the emit, async listeners in their own tasks) can read that message's
//! id, origin, key, attempt, time and headers with [`MessageContext::current`], without a
//! change to how it was registered. An event emitted any other way has no context, and an
//! actor subscribed to the bus gets the event in its own task, after the listener that
//! forwarded it returned: its handler sees no context either.
//!
//! Why a task-local carried by the emit, and not an argument: listeners keep their one-argument
//! shape (`|e: &E|`), a listener written for local events works unchanged on bridged ones, and
//! the cost falls only on bridged emits. The context rides with `emit_and_wait`'s completion
//! tracker, which already follows each delivery into the listener tasks, and is set around each
//! listener call; it is also visible to what that call emits in turn, synchronously.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

tokio::task_local! {
    static CURRENT: Arc<MessageContext>;
}

/// The broker message an event came from: see the [module docs](self).
///
/// ```
/// use std::sync::Arc;
/// use tidings::MessageContext;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // What an inbound bridge sets around its listeners; tests can set it the same way.
/// let context = Arc::new(MessageContext::new("orders").with_id("m-1").with_attempt(2));
/// let id = context
///     .scope(async { MessageContext::current().and_then(|m| m.id().map(str::to_owned)) })
///     .await;
/// assert_eq!(id.as_deref(), Some("m-1"));
/// assert!(MessageContext::current().is_none(), "none outside");
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct MessageContext {
    id: Option<String>,
    name: Option<String>,
    origin: Arc<str>,
    key: Option<String>,
    attempt: u32,
    time: Option<SystemTime>,
    headers: BTreeMap<String, String>,
}

impl fmt::Debug for MessageContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageContext")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("origin", &self.origin)
            .field("key", &self.key)
            .field("attempt", &self.attempt)
            .field("headers", &self.headers.len())
            .finish_non_exhaustive()
    }
}

impl MessageContext {
    /// A context for a message from `origin` (queue, topic or stream), on its first attempt,
    /// with nothing else known.
    pub fn new(origin: impl Into<Arc<str>>) -> Self {
        MessageContext {
            id: None,
            name: None,
            origin: origin.into(),
            key: None,
            attempt: 1,
            time: None,
            headers: BTreeMap::new(),
        }
    }

    /// Sets the message id.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the event name the producer gave.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Sets the key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the attempt (from 1).
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt.max(1);
        self
    }

    /// Sets when the producer created the message.
    #[must_use]
    pub fn with_time(mut self, time: SystemTime) -> Self {
        self.time = Some(time);
        self
    }

    /// Sets the headers.
    #[must_use]
    pub fn with_headers(mut self, headers: BTreeMap<String, String>) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the optional fields as a broker reported them.
    #[cfg(feature = "bridge")]
    pub(crate) fn set_known(
        &mut self,
        id: Option<String>,
        name: Option<String>,
        key: Option<String>,
        time: Option<SystemTime>,
    ) {
        (self.id, self.name, self.key, self.time) = (id, name, key, time);
    }

    /// The id, name, key and headers, moved out.
    #[cfg(feature = "bridge")]
    pub(crate) fn into_known(
        self,
    ) -> (
        Option<String>,
        Option<String>,
        Option<String>,
        BTreeMap<String, String>,
    ) {
        (self.id, self.name, self.key, self.headers)
    }

    /// The context of the message whose event the caller is handling, if any.
    pub fn current() -> Option<Arc<MessageContext>> {
        CURRENT.try_with(Arc::clone).ok()
    }

    /// Runs `future` with this as the current context (what an inbound bridge does around its
    /// listeners; tests of a listener that reads the context can do the same).
    pub fn scope<F: Future>(self: Arc<Self>, future: F) -> impl Future<Output = F::Output> {
        // Not an `async fn`: that would keep `future` and the scope holding it side by side.
        CURRENT.scope(self, future)
    }

    /// Runs `f` with this as the current context.
    pub fn sync_scope<R>(self: Arc<Self>, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// The message id, when the producer set one (what an inbox records).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The event name (type) the producer gave, when it gave one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The queue, topic or stream it came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The routing or partition key, when it has one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Which delivery this is: 1 for the first (redeliveries and the inbound bridge's retries
    /// count up).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// When the producer created it, when known.
    pub fn time(&self) -> Option<SystemTime> {
        self.time
    }

    /// Its headers, other than the mapped fields (trace context included, such as
    /// `traceparent`).
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.headers
    }

    /// The W3C trace context the message carried (`traceparent`, `tracestate`); `None` when
    /// it carried none or a malformed one. See [`crate::trace`].
    pub fn trace(&self) -> Option<crate::trace::TraceContext> {
        crate::trace::TraceContext::from_headers(&self.headers)
    }

    /// One header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::MessageContext;

    #[test]
    fn a_scoped_future_holds_the_future_once() {
        async fn large() -> u8 {
            let state = [3u8; 1024];
            tokio::task::yield_now().await;
            state[1023]
        }
        let alone = std::mem::size_of_val(&large());
        let scoped = Arc::new(MessageContext::new("orders")).scope(large());
        assert!(
            std::mem::size_of_val(&scoped) <= alone + 64,
            "{} bytes for a future of {alone}",
            std::mem::size_of_val(&scoped)
        );
    }
}
