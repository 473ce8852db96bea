//! Messages in the mailbox, with their type erased.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use tokio::sync::oneshot;

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

/// A told message.
pub(crate) struct Tell<M>(pub(crate) M);

/// An asked message with the channel for its reply.
pub(crate) struct Ask<M: Message>(pub(crate) M, pub(crate) oneshot::Sender<M::Reply>);

impl<A: Actor, M: HandledBy<A>> Letter<A> for Tell<M> {
    fn handle<'a>(self: Box<Self>, actor: &'a mut A, ctx: &'a mut Context<A>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            self.0.handle_by(actor, ctx).await;
        })
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
        let Ask(message, reply) = *self;
        Box::pin(async move {
            let answer = message.handle_by(actor, ctx).await;
            // The asker may have given up (timeout); then nobody wants the answer.
            let _ = reply.send(answer);
        })
    }

    fn message_type(&self) -> &'static str {
        std::any::type_name::<M>()
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}
