//! W3C Trace Context on the wire: [`TraceContext`], what a message's `traceparent` and
//! `tracestate` headers hold, and, with the feature `opentelemetry`, how a `tracing` span
//! continues one and is written into one.
//!
//! Every transport carries the envelope's headers as they are (RabbitMQ headers, Kafka
//! headers, Redis Streams fields), so the two headers reach a Node service whose
//! OpenTelemetry W3C propagator reads `traceparent` and `tracestate`, and come back from it.
//! The CloudEvents distributed-tracing extension names the same two attributes; its bindings'
//! prefixed forms (`ce_traceparent` on Kafka, `cloudEvents:traceparent` and
//! `cloudEvents_traceparent` on AMQP) are read too, and the plain names win.
//!
//! Bytes from a broker are untrusted: [`TraceContext::parse`] accepts exactly what the W3C
//! recommendation allows (version `00`, or a later version's first four fields), refuses
//! all-zero ids, caps `tracestate` at 512 bytes and 32 members, and returns `None` for
//! anything else. A message with a malformed `traceparent` is handled as one without any:
//! its span starts a new trace.
//!
//! # With OpenTelemetry (feature `opentelemetry`)
//!
//! Install `tracing-opentelemetry`'s layer in the subscriber, and:
//! - an [`Outbound`](crate::bridge::Outbound) creates a `create {destination}` span (kind
//!   producer) per message, child of the span current where the event was emitted, and writes
//!   its context into the message; each batch is published in a `send` span (a root: the
//!   bridge's task publishes for many traces at once) linked to those `create` spans, as the
//!   conventions have it for batches;
//! - an [`Inbound`](crate::bridge::Inbound) handles each message in a `process {source}` span
//!   (kind consumer) whose parent is the context the message carried, with the messaging
//!   attributes of OpenTelemetry's semantic conventions; retries and dead letters are events on
//!   it;
//! - inside the process, an `on_async` listener and an actor handle each event in a span that
//!   continues the emitter's.
//!
//! Without the feature the spans are `tracing` spans as before (for logs), and no context is
//! written into messages; an incoming one is still readable in
//! [`MessageContext::trace`](crate::message::MessageContext::trace).

use std::collections::BTreeMap;
use std::fmt;

/// The header holding the trace id, parent span id and flags.
pub const TRACEPARENT: &str = "traceparent";
/// The header holding vendor-specific trace state.
pub const TRACESTATE: &str = "tracestate";

/// The longest `tracestate` kept, in bytes (the W3C limit for propagation).
pub const MAX_TRACESTATE_BYTES: usize = 512;
/// The most `tracestate` members kept.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Where other bindings put the two headers, read when the plain names are absent.
const PREFIXES: [&str; 3] = ["ce_", "cloudEvents:", "cloudEvents_"];

/// The CloudEvents attribute `name` in `headers`: under its plain name, else under a binding's
/// prefixed form. Runs for every incoming message, so the prefixed names are built on the stack.
pub(crate) fn cloudevents_header<'a>(
    headers: &'a BTreeMap<String, String>,
    name: &str,
) -> Option<&'a str> {
    if let Some(value) = headers.get(name) {
        return Some(value);
    }
    if headers.is_empty() {
        return None;
    }
    let mut buffer = [0u8; 64];
    PREFIXES.iter().find_map(|prefix| {
        let key = buffer.get_mut(..prefix.len() + name.len())?;
        key[..prefix.len()].copy_from_slice(prefix.as_bytes());
        key[prefix.len()..].copy_from_slice(name.as_bytes());
        headers
            .get(std::str::from_utf8(key).ok()?)
            .map(String::as_str)
    })
}

/// A W3C trace context: which trace a message belongs to and which span sent it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    state: String,
}

impl TraceContext {
    /// A context of `trace_id` whose parent is `span_id`, sampled when `sampled`.
    ///
    /// Returns `None` when either id is all zeros (invalid by the recommendation).
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Option<Self> {
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            flags: u8::from(sampled),
            state: String::new(),
        })
    }

    /// Parses a `traceparent` and, when given, a `tracestate` header. `None` when the
    /// `traceparent` is malformed; a malformed or oversized `tracestate` is dropped alone (as
    /// the recommendation says), keeping the parent.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let parent = traceparent.trim_matches(|c| c == ' ' || c == '\t');
        let bytes = parent.as_bytes();
        // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2.
        if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        let version = hex_byte(&bytes[0..2])?;
        match version {
            0x00 if bytes.len() != 55 => return None,
            0xff => return None,
            // A later version may append fields after a dash.
            v if v > 0 && bytes.len() > 55 && bytes[55] != b'-' => return None,
            _ => {}
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(&bytes[3 + 2 * i..5 + 2 * i])?;
        }
        let mut span_id = [0u8; 8];
        for (i, byte) in span_id.iter_mut().enumerate() {
            *byte = hex_byte(&bytes[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&bytes[53..55])?;
        let mut context = TraceContext::new(trace_id, span_id, false)?;
        context.flags = flags;
        context.state = tracestate.and_then(valid_state).unwrap_or_default();
        Some(context)
    }

    /// The context in `headers` (`traceparent`, `tracestate`, or their CloudEvents-binding
    /// forms); `None` when there is none or it is malformed.
    pub fn from_headers(headers: &BTreeMap<String, String>) -> Option<Self> {
        let parent = cloudevents_header(headers, TRACEPARENT)?;
        TraceContext::parse(parent, cloudevents_header(headers, TRACESTATE))
    }

    /// Writes `traceparent` (and `tracestate` when there is one) into `headers`, replacing
    /// what was there.
    pub fn write_to(&self, headers: &mut BTreeMap<String, String>) {
        headers.insert(TRACEPARENT.to_owned(), self.traceparent());
        if self.state.is_empty() {
            headers.remove(TRACESTATE);
        } else {
            headers.insert(TRACESTATE.to_owned(), self.state.clone());
        }
    }

    /// The `traceparent` header's value (version `00`).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            self.flags
        )
    }

    /// The trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The trace id as 32 lowercase hex digits, as tracing backends show it.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The id of the span that sent the message (the parent of the receiver's span).
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// The sending span's id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }

    /// Whether the sender sampled the trace.
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The `tracestate` (empty when none, or when it was malformed or over the limits).
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The same context with `state` as its `tracestate` (dropped when malformed or over the
    /// limits).
    #[must_use]
    pub fn with_state(mut self, state: &str) -> Self {
        self.state = valid_state(state).unwrap_or_default();
        self
    }

    /// The context of `span` as OpenTelemetry knows it: `None` when the span is disabled, the
    /// subscriber has no `tracing-opentelemetry` layer, or tidings is built without the feature
    /// `opentelemetry` (spans have no W3C ids then). Asking starts the span: its parent is
    /// fixed from then on.
    pub fn of_span(span: &tracing::Span) -> Option<Self> {
        #[cfg(feature = "opentelemetry")]
        {
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            if span.is_none() {
                return None;
            }
            let context = span.context();
            let otel = context.span();
            let of = otel.span_context();
            if !of.is_valid() {
                return None;
            }
            let mut trace =
                TraceContext::new(of.trace_id().to_bytes(), of.span_id().to_bytes(), false)?;
            trace.flags = of.trace_flags().to_u8();
            trace.state = valid_state(&of.trace_state().header()).unwrap_or_default();
            Some(trace)
        }
        #[cfg(not(feature = "opentelemetry"))]
        {
            let _ = span;
            None
        }
    }

    /// Makes this context (received from elsewhere) the parent of `span`, so `span` continues
    /// its trace. Does nothing when the span is disabled or has started already, and without
    /// the feature `opentelemetry` (spans have no W3C ids then), so a transport outside this
    /// crate can call it unconditionally.
    pub fn make_parent_of(&self, span: &tracing::Span) {
        #[cfg(feature = "opentelemetry")]
        {
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            if span.is_disabled() {
                return;
            }
            let remote =
                opentelemetry::Context::new().with_remote_span_context(self.span_context());
            let _ = span.set_parent(remote);
        }
        #[cfg(not(feature = "opentelemetry"))]
        let _ = span;
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceContext")
            .field("traceparent", &self.traceparent())
            .field("tracestate", &self.state)
            .finish()
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

/// Two lowercase hex digits (the recommendation refuses uppercase).
fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(pair[0])? << 4 | digit(pair[1])?)
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `state` when it is a well-formed list within the limits: members `key=value`, keys of
/// lowercase letters, digits and `_-*/@`, values of printable ASCII without `,` and `=`.
fn valid_state(state: &str) -> Option<String> {
    let state = state.trim();
    if state.is_empty() || state.len() > MAX_TRACESTATE_BYTES {
        return None;
    }
    let mut members = 0;
    for member in state.split(',') {
        let member = member.trim();
        if member.is_empty() {
            continue;
        }
        members += 1;
        let (key, value) = member.split_once('=')?;
        let key_ok = !key.is_empty()
            && key.len() <= 256
            && key
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/@".contains(&c));
        let value_ok = !value.is_empty()
            && value.len() <= 256
            && value
                .bytes()
                .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=');
        if !key_ok || !value_ok {
            return None;
        }
    }
    (members > 0 && members <= MAX_TRACESTATE_MEMBERS).then(|| state.to_owned())
}

#[cfg(feature = "opentelemetry")]
impl TraceContext {
    /// This context as OpenTelemetry's (remote) span context.
    pub fn span_context(&self) -> opentelemetry::trace::SpanContext {
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            self.state.parse::<TraceState>().unwrap_or_default(),
        )
    }
}

/// Whether `span` can continue a trace carried by a message: tidings is built with the feature
/// `opentelemetry` and `span` is enabled. Unlike [`TraceContext::of_span`], asking does not
/// start the span, so a transport can ask before it reads a carrier and gives the span its
/// parent with [`TraceContext::make_parent_of`].
pub fn can_continue(span: &tracing::Span) -> bool {
    cfg!(feature = "opentelemetry") && !span.is_disabled()
}

/// The current span, for work handed to another task to continue; `None` outside any span,
/// at the cost of one atomic load when no `tracing` subscriber was ever installed (asking for
/// the current span cost about 100 instructions per emit even then).
#[inline]
pub(crate) fn current_span() -> Option<tracing::Span> {
    if !tracing::dispatcher::has_been_set() {
        return None;
    }
    let span = tracing::Span::current();
    (!span.is_none()).then_some(span)
}

/// Writes the context of `span` into `headers` (with the feature `opentelemetry`; without it,
/// spans have no W3C ids and nothing is written).
#[cfg(feature = "bridge")]
pub(crate) fn write_span(span: &tracing::Span, headers: &mut BTreeMap<String, String>) {
    #[cfg(feature = "opentelemetry")]
    if let Some(context) = TraceContext::of_span(span) {
        context.write_to(headers);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, headers);
}

/// Links `span` to the context each message of `batch` carries (with the feature
/// `opentelemetry`).
#[cfg(feature = "bridge")]
pub(crate) fn link_messages(span: &tracing::Span, batch: &[crate::bridge::Outgoing]) {
    #[cfg(feature = "opentelemetry")]
    if !span.is_disabled() {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        for out in batch {
            if let Some(context) = TraceContext::from_headers(&out.envelope.headers) {
                span.add_link(context.span_context());
            }
        }
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (span, batch);
}

/// Makes the context in `headers` (if any, and well formed) the parent of `span`.
#[cfg(feature = "bridge")]
pub(crate) fn continue_from(headers: &BTreeMap<String, String>, span: &tracing::Span) {
    // A span nobody records has no parent to set: the headers are not even read.
    #[cfg(feature = "opentelemetry")]
    if span.is_disabled() {
        return;
    }
    #[cfg(feature = "opentelemetry")]
    if let Some(context) = TraceContext::from_headers(headers) {
        context.make_parent_of(span);
    }
    #[cfg(not(feature = "opentelemetry"))]
    let _ = (headers, span);
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips() {
        let context = TraceContext::parse(GOOD, Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"))
            .expect("valid");
        assert_eq!(context.traceparent(), GOOD);
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id_hex(), "00f067aa0ba902b7");
        assert!(context.is_sampled());
        assert_eq!(context.state(), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
        let mut headers = BTreeMap::new();
        context.write_to(&mut headers);
        assert_eq!(TraceContext::from_headers(&headers), Some(context));
    }

    #[test]
    fn hostile_or_malformed_traceparents_are_refused() {
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        let long = format!("{GOOD}-extra");
        let huge = "0".repeat(1 << 20);
        for bad in [
            "",
            "garbage",
            zero_trace,
            zero_span,
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01",
            &long,
            &huge,
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad:.80}");
        }
        // A later version may carry more fields.
        let later = format!("01{}-more", &GOOD[2..]);
        assert!(TraceContext::parse(&later, None).is_some());
    }

    #[test]
    fn a_bad_tracestate_is_dropped_and_the_parent_kept() {
        let too_many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        for bad in [
            "no-equals",
            "Upper=x",
            "k=v,=x",
            &"k=".repeat(300),
            &too_many.join(","),
        ] {
            let context = TraceContext::parse(GOOD, Some(bad)).expect("the parent is kept");
            assert_eq!(context.state(), "", "{bad:.80}");
        }
    }

    #[test]
    fn the_plain_header_wins_over_a_binding_prefix() {
        let other = "00-11111111111111111111111111111111-2222222222222222-00";
        let headers = BTreeMap::from([
            ("ce_traceparent".to_owned(), other.to_owned()),
            (TRACEPARENT.to_owned(), GOOD.to_owned()),
        ]);
        assert_eq!(
            TraceContext::from_headers(&headers).unwrap().traceparent(),
            GOOD
        );
        let only_prefixed = BTreeMap::from([("ce_traceparent".to_owned(), other.to_owned())]);
        let context = TraceContext::from_headers(&only_prefixed).unwrap();
        assert_eq!(context.traceparent(), other);
        assert!(!context.is_sampled());
    }
}
