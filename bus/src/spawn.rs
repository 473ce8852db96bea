//! The runtime that the tasks of buses, bridges, actors and reporters are spawned on.

/// The tokio runtime to spawn `what` on; panics with a clear message outside of one.
#[track_caller]
pub(crate) fn runtime(what: &str) -> tokio::runtime::Handle {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle,
        Err(_) => panic!("{what} run as tokio tasks: call this inside a tokio runtime"),
    }
}
