//! Messages in the mailbox, with their type erased.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use futures_util::FutureExt;
use tokio::sync::oneshot;
use tracing::{Instrument, Span};

use super::{Actor, Context, HandledBy, Message};

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A message of some type the actor `A` handles, waiting in its mailbox.
pub(crate) trait Letter<A>: Send {
    /// Handles the message; answers the asker if there is one.
    fn handle<'a>(self: Box<Self>, actor: &'a mut A, ctx: &'a mut Context<A>) -> BoxFuture<'a, ()>
    where
        A: super::Actor;

    /// The message's type name, for dead-letter reports.
    fn message_type(&self) -> &'static str;

    /// The letter as `Any`, to hand an undelivered message back to its sender.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

pub(crate) type BoxLetter<A> = Box<dyn Letter<A>>;

/// A told message, and the span it was sent in (none outside any span).
pub(crate) struct Tell<M>(pub(crate) M, pub(crate) Span);

/// An asked message with the channel for its reply, and the span it was sent in.
pub(crate) struct Ask<M: Message>(
    pub(crate) M,
    pub(crate) oneshot::Sender<M::Reply>,
    pub(crate) Span,
);

/// The span a message is handled in: a child of the span it was sent in, so the trace goes
/// on into the actor's task (or that span itself, when this level is filtered out).
fn handling<M>(sent_in: &Span) -> Span {
    if sent_in.is_none() {
        return Span::none();
    }
    let message = std::any::type_name::<M>();
    let child = tracing::trace_span!(parent: sent_in, "tidings.actor.handle", message);
    if child.is_disabled() {
        sent_in.clone()
    } else {
        child
    }
}

impl<A: Actor, M: HandledBy<A>> Letter<A> for Tell<M> {
    fn handle<'a>(self: Box<Self>, actor: &'a mut A, ctx: &'a mut Context<A>) -> BoxFuture<'a, ()> {
        let Tell(message, sent_in) = *self;
        Box::pin(
            message
                .handle_by(actor, ctx)
                .instrument(handling::<M>(&sent_in))
                .map(drop),
        )
    }

    fn message_type(&self) -> &'static str {
        std::any::type_name::<M>()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

impl<A: Actor, M: HandledBy<A>> Letter<A> for Ask<M> {
    fn handle<'a>(self: Box<Self>, actor: &'a mut A, ctx: &'a mut Context<A>) -> BoxFuture<'a, ()> {
        let Ask(message, reply, sent_in) = *self;
        let span = handling::<M>(&sent_in);
        Box::pin(
            async move {
                let answer = message.handle_by(actor, ctx).await;
                // The asker may have given up (timeout); then nobody wants the answer.
                let _ = reply.send(answer);
            }
            .instrument(span),
        )
    }

    fn message_type(&self) -> &'static str {
        std::any::type_name::<M>()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}
