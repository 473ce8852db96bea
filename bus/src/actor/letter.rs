//! Messages in the mailbox, with their type erased.
//!
//! Why a letter travels in the mailbox's own slot: a `tell` into an actor on another thread
//! used to box its letter on the sender's thread and free it on the actor's, and the
//! allocator's cross-thread free and the sender's refills were a fifth of a multi-thread
//! `tell` (`benches/README.md`, "Tell throughput"). A letter of up to [`Room`] (four words: a
//! told message of up to 24 bytes, or 32 when its type has a spare value as one holding a
//! `String`, `Vec`, `Box` or `Arc` does; an asked one of up to 16, or 24) now sits inline in
//! the channel's slot (`smallbox`), and only larger ones are boxed. The span a message was sent
//! in is boxed, and only when there is one (tracing on and inside a span): an untraced letter
//! is its content alone, a traced one has a word less for its message. A letter is handled
//! (or handed back) by taking its message out, which leaves it empty; the empty letter is then
//! dropped where it is.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;

use futures_util::FutureExt;
use smallbox::{smallbox, SmallBox};
use tokio::sync::oneshot;
use tracing::{Instrument, Span};

use super::{Actor, Context, HandledBy, Message};

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The inline room of a letter in the mailbox: four words (a message, and the word that says
/// whether it was taken out unless its type has a spare value for that). Every mailbox slot is
/// this big and a mailbox's first block holds 32 slots, so each word more costs every actor
/// 256 bytes, used or not, and measurably slows spawning (five words took spawning 10,000
/// actors from about 430 to 560 ms, `benches/README.md`).
pub(crate) type Room = smallbox::space::S4;

/// A message of some type the actor `A` handles, waiting in its mailbox.
pub(crate) trait Letter<A>: Send {
    /// Takes the message out to handle it (the future answers the asker if there is one).
    /// `None` when it was taken already.
    fn handle<'a>(
        &mut self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
    ) -> Option<BoxFuture<'a, ()>>
    where
        A: super::Actor;

    /// The message's type name, for dead-letter reports.
    fn message_type(&self) -> &'static str;

    /// Takes the message out as `Any`, to hand an undelivered message back to its sender.
    fn take_any(&mut self) -> Option<Box<dyn Any + Send>>;
}

/// A letter as it travels through the mailbox: inline when it fits in [`Room`].
pub(crate) type BoxLetter<A> = SmallBox<dyn Letter<A>, Room>;

/// What a letter holds, handled in the span it was sent in (if any).
trait Content<A: Actor>: Send + 'static {
    /// Takes the message out to handle it, in a span continuing `sent_in`.
    fn handle_in<'a>(
        &mut self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
        sent_in: Option<&Span>,
    ) -> Option<BoxFuture<'a, ()>>;

    /// See [`Letter::message_type`].
    fn message_type(&self) -> &'static str;

    /// See [`Letter::take_any`].
    fn take_any(&mut self) -> Option<Box<dyn Any + Send>>;
}

/// A letter: its content and, where it was sent inside a span, that span. `S` is `()` for a
/// letter sent outside any span, so that it spends no word on a span it does not have, and a
/// box of its own for one sent inside a span.
struct Sent<C, S>(C, S);

/// Where a letter keeps the span it was sent in.
trait SentIn: Send + 'static {
    fn span(&self) -> Option<&Span>;
}

impl SentIn for () {
    fn span(&self) -> Option<&Span> {
        None
    }
}

impl SentIn for Box<Span> {
    fn span(&self) -> Option<&Span> {
        Some(self)
    }
}

/// The letter for `content`, sent in `span`.
fn letter<A: Actor, C: Content<A>>(content: C, span: Option<Span>) -> BoxLetter<A> {
    match span {
        None => smallbox!(Sent(content, ())),
        Some(span) => smallbox!(Sent(content, Box::new(span))),
    }
}

impl<A: Actor, C: Content<A>, S: SentIn> Letter<A> for Sent<C, S> {
    fn handle<'a>(
        &mut self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
    ) -> Option<BoxFuture<'a, ()>> {
        self.0.handle_in(actor, ctx, self.1.span())
    }

    fn message_type(&self) -> &'static str {
        self.0.message_type()
    }

    fn take_any(&mut self) -> Option<Box<dyn Any + Send>> {
        self.0.take_any()
    }
}

/// A told message (`None` once taken out).
pub(crate) struct Tell<M>(Option<M>);

impl<M: Send + 'static> Tell<M> {
    /// The letter for `message`, sent in `span`.
    pub(crate) fn letter<A: Actor>(message: M, span: Option<Span>) -> BoxLetter<A>
    where
        M: HandledBy<A>,
    {
        letter(Tell(Some(message)), span)
    }
}

/// An asked message with the channel for its reply (`None` once taken out).
pub(crate) struct Ask<M: Message>(Option<(M, oneshot::Sender<M::Reply>)>);

impl<M: Message> Ask<M> {
    /// The letter for `message`, whose reply goes to `reply`, sent in `span`.
    pub(crate) fn letter<A: Actor>(
        message: M,
        reply: oneshot::Sender<M::Reply>,
        span: Option<Span>,
    ) -> BoxLetter<A>
    where
        M: HandledBy<A>,
    {
        letter(Ask(Some((message, reply))), span)
    }
}

/// The message of an undelivered `letter`, which was sent holding an `M`.
pub(crate) fn take_message<A, M: 'static>(mut letter: BoxLetter<A>) -> M {
    let any = letter.take_any();
    match any.map(|any| any.downcast::<M>()) {
        Some(Ok(message)) => *message,
        _ => unreachable!("a letter is handed back once, with the type it was sent with"),
    }
}

/// The span a message is handled in: a child of the span it was sent in, so the trace goes
/// on into the actor's task (or that span itself, when this level is filtered out).
fn handling<M>(sent_in: Option<&Span>) -> Span {
    let Some(sent_in) = sent_in else {
        return Span::none();
    };
    let message = std::any::type_name::<M>();
    let child = tracing::trace_span!(parent: sent_in, "tidings.actor.handle", message);
    if child.is_disabled() {
        sent_in.clone()
    } else {
        child
    }
}

impl<A: Actor, M: HandledBy<A>> Content<A> for Tell<M> {
    fn handle_in<'a>(
        &mut self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
        sent_in: Option<&Span>,
    ) -> Option<BoxFuture<'a, ()>> {
        let message = self.0.take()?;
        let span = handling::<M>(sent_in);
        Some(Box::pin(
            message.handle_by(actor, ctx).instrument(span).map(drop),
        ))
    }

    fn message_type(&self) -> &'static str {
        std::any::type_name::<M>()
    }

    fn take_any(&mut self) -> Option<Box<dyn Any + Send>> {
        Some(Box::new(self.0.take()?))
    }
}

impl<A: Actor, M: HandledBy<A>> Content<A> for Ask<M> {
    fn handle_in<'a>(
        &mut self,
        actor: &'a mut A,
        ctx: &'a mut Context<A>,
        sent_in: Option<&Span>,
    ) -> Option<BoxFuture<'a, ()>> {
        let (message, reply) = self.0.take()?;
        let span = handling::<M>(sent_in);
        Some(Box::pin(
            async move {
                let answer = message.handle_by(actor, ctx).await;
                // The asker may have given up (timeout); then nobody wants the answer.
                let _ = reply.send(answer);
            }
            .instrument(span),
        ))
    }

    fn message_type(&self) -> &'static str {
        std::any::type_name::<M>()
    }

    fn take_any(&mut self) -> Option<Box<dyn Any + Send>> {
        Some(Box::new(self.0.take()?.0))
    }
}

#[cfg(test)]
mod tests {
    //! The letters' own life: inline or boxed, handed back whole, dropped once. Run under Miri
    //! too (`.ci/run`), since `smallbox` moves the inline ones by their bytes.

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    struct Counter;
    impl Actor for Counter {}

    /// A message that counts its drops, with `N` bytes of payload.
    struct Payload<const N: usize>([u8; N], Arc<AtomicUsize>);
    impl<const N: usize> Drop for Payload<N> {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
    }
    impl<const N: usize> Message for Payload<N> {
        type Reply = u8;
    }
    impl<const N: usize> super::super::Handler<Payload<N>> for Counter {
        async fn handle(&mut self, message: Payload<N>, _: &mut Context<Self>) -> u8 {
            message.0[N - 1]
        }
    }

    fn message<const N: usize>(drops: &Arc<AtomicUsize>) -> Payload<N> {
        let mut bytes = [0u8; N];
        bytes[N - 1] = 7;
        Payload(bytes, Arc::clone(drops))
    }

    /// A message of `N` words with no spare value (every bit pattern is a message).
    #[allow(dead_code)] // Only its size matters.
    struct Plain<const N: usize>([u64; N]);
    impl<const N: usize> Message for Plain<N> {
        type Reply = ();
    }
    impl<const N: usize> super::super::Handler<Plain<N>> for Counter {
        async fn handle(&mut self, _: Plain<N>, _: &mut Context<Self>) {}
    }

    /// A message of `N` words besides a `String`, whose pointer is never null (a spare value).
    #[allow(dead_code)] // Only its size matters.
    struct Named<const N: usize>(String, [u64; N]);
    impl<const N: usize> Message for Named<N> {
        type Reply = ();
    }
    impl<const N: usize> super::super::Handler<Named<N>> for Counter {
        async fn handle(&mut self, _: Named<N>, _: &mut Context<Self>) {}
    }

    fn told<M: HandledBy<Counter>>(message: M) -> BoxLetter<Counter> {
        Tell::letter(message, None)
    }

    fn asked<M: HandledBy<Counter>>(message: M) -> BoxLetter<Counter> {
        Ask::letter(message, oneshot::channel().0, None)
    }

    #[test]
    fn what_the_module_docs_say_fits_inline_does_and_what_does_not_is_boxed() {
        assert!(!told(Plain([1, 2, 3])).is_heap(), "24 bytes told");
        assert!(told(Plain([1, 2, 3, 4])).is_heap(), "32 bytes told");
        assert!(
            !told(Named("x".into(), [1])).is_heap(),
            "32 bytes, a spare value, told"
        );
        assert!(
            told(Named("x".into(), [1, 2])).is_heap(),
            "40 bytes, a spare value, told"
        );
        assert!(!asked(Plain([1, 2])).is_heap(), "16 bytes asked");
        assert!(asked(Plain([1, 2, 3])).is_heap(), "24 bytes asked");
        assert!(
            !asked(Named("x".into(), [])).is_heap(),
            "24 bytes, a spare value, asked"
        );
        assert!(
            asked(Named("x".into(), [1])).is_heap(),
            "32 bytes, a spare value, asked"
        );
        // A letter sent in a span holds the span's box: a word less for the message.
        let traced: BoxLetter<Counter> = Tell::letter(Plain([1, 2]), Some(Span::none()));
        assert!(!traced.is_heap(), "16 bytes told in a span");
        let traced: BoxLetter<Counter> = Tell::letter(Plain([1, 2, 3]), Some(Span::none()));
        assert!(traced.is_heap(), "24 bytes told in a span");
    }

    #[test]
    fn a_small_letter_is_inline_and_a_large_one_boxed_and_each_comes_back_whole() {
        let drops = Arc::new(AtomicUsize::new(0));
        // 16 bytes of payload and an `Arc`: 24 bytes, with the empty span, fits.
        let small: BoxLetter<Counter> = Tell::letter(message::<16>(&drops), None);
        let large: BoxLetter<Counter> = Tell::letter(message::<64>(&drops), None);
        assert!(!small.is_heap());
        assert!(large.is_heap());
        // Moved around as the mailbox moves them.
        let letters = vec![small, large];
        let mut letters = letters.into_iter();
        let small: Payload<16> = take_message(letters.next().unwrap());
        let large: Payload<64> = take_message(letters.next().unwrap());
        assert_eq!((small.0[15], large.0[63]), (7, 7));
        assert_eq!(drops.load(Ordering::Relaxed), 0, "handed back, not dropped");
        drop((small, large));
        assert_eq!(drops.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn an_unhandled_letter_drops_its_message_once_and_an_asked_one_its_reply_channel() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (reply, answer) = oneshot::channel();
        let asked: BoxLetter<Counter> = Ask::letter(message::<8>(&drops), reply, None);
        let told: BoxLetter<Counter> = Tell::letter(message::<200>(&drops), Some(Span::none()));
        assert_eq!(asked.message_type(), std::any::type_name::<Payload<8>>());
        drop((asked, told));
        assert_eq!(drops.load(Ordering::Relaxed), 2);
        let mut answer = answer;
        assert!(
            answer.try_recv().is_err(),
            "the asker learns nobody will answer"
        );
    }

    #[test]
    fn a_letter_gives_its_message_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let mut letter: BoxLetter<Counter> = Tell::letter(message::<4>(&drops), None);
        assert!(letter.take_any().is_some());
        assert!(letter.take_any().is_none());
        drop(letter);
        assert_eq!(drops.load(Ordering::Relaxed), 1);
    }
}
