//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`, off by
//! default): whatever recorder the service installs (Prometheus, StatsD...) receives them.
//!
//! Two kinds, for two costs:
//!
//! - **Per event name, measured where it happens**: `tidings_events_emitted_total{event}`
//!   (emits that reached a listener) and the histogram `tidings_handler_seconds{event}` (how
//!   long listener calls took: every async listener call, and the sync listener calls of one
//!   emit in [`SYNC_SAMPLE`] per thread, since two clock reads cost more than a short sync
//!   listener). They exist only with the feature; without it the emit path compiles to what it
//!   was (`benches/README.md` has both). Install the recorder before the first emit: each
//!   thread keeps the handles it got first.
//! - **Counters and queue depths, read from the stats snapshots**: a [`Reporter`] reads the
//!   snapshots of the buses, bridges and actor systems given to it, every interval (and on
//!   [`Reporter::report`]), and publishes them labelled by the name given with each:
//!
//! | source | metrics (counters end in `_total`) | label |
//! |---|---|---|
//! | [`Bus`] | `tidings_bus_{emitted,delivered,handled,failed,panicked,dropped,rejected}_total`, gauge `tidings_bus_queued` | `bus` |
//! | `Outbound` | `tidings_outbound_{published,confirmed,retried,rejected,unencodable,dropped}_total`, gauges `tidings_outbound_in_flight`, `tidings_outbound_buffered` | `bridge` |
//! | `Inbound` | `tidings_inbound_{received,handled,redelivered,retried,dead_lettered,duplicates,reconnects,unheard}_total`, gauge `tidings_inbound_lag` (consumer lag where the transport measures it; `NaN` while unknown) | `bridge` |
//! | `ActorSystem` | gauge `tidings_actors`, `tidings_actor_dead_letters_total` | `system` |
//!
//! Reading snapshots keeps the hot paths free of metric calls: the counters they keep anyway
//! are published as they are.
//!
//! ```
//! use std::time::Duration;
//! use tidings::metrics::Reporter;
//! use tidings::prelude::*;
//!
//! #[derive(Debug, Clone, Event)]
//! struct Tick;
//!
//! #[derive(EventSet)]
//! #[event_set(no_codec)]
//! enum App { Tick(Tick) }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let bus = Bus::<App>::new();
//! // With a recorder installed (`metrics_exporter_prometheus::PrometheusBuilder`...):
//! let reporter = Reporter::new().every(Duration::from_secs(5)).bus("app", &bus).spawn();
//! # drop(reporter);
//! # }
//! ```

use std::time::Duration;

use crate::{Bus, EventSet};

pub use crate::record::SYNC_SAMPLE;

type Probe = Box<dyn Fn() + Send + Sync>;

/// Publishes the stats snapshots of buses, bridges and actor systems as metrics; see the
/// [module docs](self).
#[must_use]
pub struct Reporter {
    sources: Vec<Probe>,
    every: Duration,
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter::new()
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("sources", &self.sources.len())
            .field("every", &self.every)
            .finish()
    }
}

fn counters(prefix: &str, label: &'static str, name: &str, values: &[(&str, u64)]) {
    for (what, value) in values {
        metrics::counter!(format!("{prefix}_{what}_total"), label => name.to_owned())
            .absolute(*value);
    }
}

fn gauges(prefix: &str, label: &'static str, name: &str, values: &[(&str, f64)]) {
    for (what, value) in values {
        metrics::gauge!(format!("{prefix}_{what}"), label => name.to_owned()).set(*value);
    }
}

impl Reporter {
    /// Nothing to report yet; reports every ten seconds once spawned.
    pub fn new() -> Reporter {
        Reporter {
            sources: Vec::new(),
            every: Duration::from_secs(10),
        }
    }

    /// How often a spawned reporter reads the snapshots.
    pub fn every(mut self, interval: Duration) -> Reporter {
        self.every = interval.max(Duration::from_millis(1));
        self
    }

    /// Reports `bus`'s counters and queue depth, labelled `bus=name`.
    pub fn bus<S: EventSet>(mut self, name: &str, bus: &Bus<S>) -> Reporter {
        let (bus, name) = (bus.clone(), name.to_owned());
        self.sources.push(Box::new(move || {
            let s = bus.stats();
            counters(
                "tidings_bus",
                "bus",
                &name,
                &[
                    ("emitted", s.emitted),
                    ("delivered", s.delivered),
                    ("handled", s.handled),
                    ("failed", s.failed),
                    ("panicked", s.panicked),
                    ("dropped", s.dropped),
                    ("rejected", s.rejected),
                ],
            );
            gauges("tidings_bus", "bus", &name, &[("queued", s.queued as f64)]);
        }));
        self
    }

    /// Reports an outbound bridge's counters and buffer depth, labelled `bridge=name`.
    #[cfg(feature = "bridge")]
    pub fn outbound<S: crate::codec::EventSetCodec>(
        mut self,
        name: &str,
        outbound: &crate::bridge::Outbound<S>,
    ) -> Reporter {
        let (stats, name) = (outbound.stats_reader(), name.to_owned());
        self.sources.push(Box::new(move || {
            let s = stats();
            counters(
                "tidings_outbound",
                "bridge",
                &name,
                &[
                    ("published", s.published),
                    ("confirmed", s.confirmed),
                    ("retried", s.retried),
                    ("rejected", s.rejected),
                    ("unencodable", s.unencodable),
                    ("dropped", s.dropped),
                ],
            );
            gauges(
                "tidings_outbound",
                "bridge",
                &name,
                &[
                    ("in_flight", s.in_flight as f64),
                    ("buffered", s.buffered as f64),
                ],
            );
        }));
        self
    }

    /// Reports an inbound bridge's counters, labelled `bridge=name`.
    #[cfg(feature = "bridge")]
    pub fn inbound(mut self, name: &str, inbound: &crate::bridge::Inbound) -> Reporter {
        let (stats, name) = (inbound.stats_reader(), name.to_owned());
        self.sources.push(Box::new(move || {
            let s = stats();
            counters(
                "tidings_inbound",
                "bridge",
                &name,
                &[
                    ("received", s.received),
                    ("handled", s.handled),
                    ("redelivered", s.redelivered),
                    ("retried", s.retried),
                    ("dead_lettered", s.dead_lettered),
                    ("duplicates", s.duplicates),
                    ("reconnects", s.reconnects),
                    ("unheard", s.unheard),
                ],
            );
            // Not a number while the lag is unknown (no consumer, or the broker cannot be
            // reached): the last value measured would claim a lag nobody knows now.
            let lag = s.lag.map_or(f64::NAN, |lag| lag as f64);
            gauges("tidings_inbound", "bridge", &name, &[("lag", lag)]);
        }));
        self
    }

    /// Reports an actor system's live actors and dead letters, labelled `system=name`.
    #[cfg(feature = "actor")]
    pub fn actors(mut self, name: &str, system: &crate::actor::ActorSystem) -> Reporter {
        let (system, name) = (system.clone(), name.to_owned());
        self.sources.push(Box::new(move || {
            gauges(
                "tidings",
                "system",
                &name,
                &[("actors", system.len() as f64)],
            );
            counters(
                "tidings_actor",
                "system",
                &name,
                &[("dead_letters", system.dead_letters())],
            );
        }));
        self
    }

    /// Reads every snapshot and publishes it now.
    pub fn report(&self) {
        for source in &self.sources {
            source();
        }
    }

    /// Reports now and then every interval, on a tokio task, until the returned handle is
    /// dropped.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn spawn(self) -> ReporterTask {
        let task = crate::spawn::runtime("a metrics reporter").spawn(async move {
            let mut ticks = tokio::time::interval(self.every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                self.report();
            }
        });
        ReporterTask(task)
    }
}

/// A spawned [`Reporter`]; dropping it stops the reporting.
#[derive(Debug)]
pub struct ReporterTask(tokio::task::JoinHandle<()>);

impl Drop for ReporterTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
