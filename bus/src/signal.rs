//! Waiting for the process to be asked to stop.

/// Resolves when the process receives SIGINT (Ctrl-C) or, on Unix, SIGTERM.
///
/// Use it to start an orderly shutdown:
///
/// ```no_run
/// # async fn run(bus: tidings::Bus<impl tidings::EventSet>) {
/// tidings::shutdown_signal().await;
/// let report = bus.shutdown(std::time::Duration::from_secs(5)).await;
/// # }
/// ```
///
/// If a signal handler cannot be installed, the failure is logged and that signal is ignored
/// (the other one still works).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
