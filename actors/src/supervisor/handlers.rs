//! The one shape every handler of a supervised actor has: [`supervised_handlers!`] writes
//! the `impl Handler<M>` blocks, and each of them runs its body through [`run`], which does
//! the mailbox accounting, the panic guard and the failure report. There is no other way
//! to give a supervised actor a handler, so an unguarded one cannot be written (a test in
//! `supervisor/tests.rs` also fails if an `impl Handler` appears anywhere else).
//!
//! Declaring the handlers in one list also gives each actor a `HANDLED` constant naming
//! every message type it handles, which the panic test walks.

use actix::prelude::*;

use super::child::Restartable;
use crate::panic_guard::guard;

/// An actor under supervision: it embeds a [`Restartable`]. Implemented by
/// [`supervised_handlers!`].
pub trait Supervisable: Actor<Context = Context<Self>> {
    /// The actor's restart bookkeeping.
    fn restartable(&mut self) -> &mut Restartable;
}

/// Runs one handler (or timer) body of a supervised actor: counts the message out of the
/// mailbox when its sender counted it in (`counted`), catches a panic, and on one reports
/// the failure to the supervisor and stops the actor (actix restarts it with its mailbox).
/// `Err(reason)` when the body panicked; the caller answers with its fallback.
pub fn run<A, R>(
    act: &mut A,
    ctx: &mut Context<A>,
    message: &'static str,
    counted: bool,
    body: impl FnOnce(&mut A, &mut Context<A>) -> R,
) -> Result<R, String>
where
    A: Supervisable,
{
    let child = &act.restartable().child;
    if counted {
        child.stats.dequeued();
    }
    #[cfg(test)]
    let injected = child.take_fault(message);
    let outcome = guard(|| {
        #[cfg(test)]
        if injected {
            panic!("injected panic in the handler of {message}");
        }
        body(act, ctx)
    });
    outcome.inspect_err(|reason| {
        tracing::debug!(message, "Handler failed.");
        act.restartable().fail(ctx, reason);
    })
}

/// Runs a timer body (`run_interval`, `run_later`) through [`run`].
pub fn tick<A: Supervisable>(
    act: &mut A,
    ctx: &mut Context<A>,
    body: impl FnOnce(&mut A, &mut Context<A>),
) {
    let _ = run(act, ctx, "tick", false, body);
}

/// Writes every `impl Handler<M>` of a supervised actor, each running through [`run`], the
/// [`Supervisable`] impl, and the actor's `HANDLED` list of message types.
///
/// ```text
/// supervised_handlers! {
///     Analyzer.restart;                       // the actor and its `Restartable` field
///     AnalyzeBatch [counted] (act, msg, _ctx) { act.on_batch(msg) }
///     GetLatest (act, _msg, _ctx) -> reply { act.latest() }
///     AddSilence (act, msg, _ctx) -> reply
///         let id = msg.silence.id.clone();    // evaluated before the body
///         else |_act, _reason| { Err(SilenceError::Unavailable { id }) }
///         { ... }
///     ReplaceAlerting (act, msg, _ctx) -> response(ResponseFuture<...>)
///         else |_act, reason| { Box::pin(async move { Err(reason) }) }
///         { ... }
/// }
/// ```
///
/// `[counted]` marks messages whose senders call `ActorStats::enqueued`; the handler counts
/// them out. Without `->` the message's result is `()`; `-> reply` answers
/// `MessageResult(value)`; `-> response(T)` answers a `T` (a future). After a panic the
/// reply is the `else` block, or `Default::default()` without one.
macro_rules! supervised_handlers {
    (@ty $msg:ident) => { () };
    (@ty $msg:ident reply) => { ::actix::MessageResult<$msg> };
    (@ty $msg:ident response ($rty:ty)) => { $rty };
    (@wrap $v:ident) => { $v };
    (@wrap $v:ident reply) => { ::actix::MessageResult($v) };
    (@wrap $v:ident response) => { $v };
    (@counted) => { false };
    (@counted counted) => { true };
    (@fallback $s:ident $r:ident) => {{
        let _ = $r;
        ::std::default::Default::default()
    }};
    (@fallback $s:ident $r:ident $fa:ident $reason:ident $fallback:block) => {{
        let $fa = $s;
        let $reason = $r;
        $fallback
    }};
    (
        $actor:ident . $field:ident ;
        $(
            $(#[$doc:meta])*
            $msg:ident $([$flag:ident])? ($act:ident, $m:ident, $ctx:ident)
                $(-> $kind:ident $(($rty:ty))?)?
                $(let $keep:ident = $keep_e:expr ;)?
                $(else |$fa:ident, $reason:ident| $fallback:block)?
                $body:block
        )*
    ) => {
        impl $crate::supervisor::Supervisable for $actor {
            fn restartable(&mut self) -> &mut $crate::supervisor::Restartable {
                &mut self.$field
            }
        }

        impl $actor {
            /// Every message type this actor handles, as declared (the panic test sends a
            /// panicking one of each).
            pub const HANDLED: &'static [&'static str] = &[$(stringify!($msg)),*];
        }

        $(
            $(#[$doc])*
            impl ::actix::Handler<$msg> for $actor {
                type Result =
                    $crate::supervisor::supervised_handlers!(@ty $msg $($kind $(($rty))?)?);
                fn handle(&mut self, $m: $msg, $ctx: &mut Self::Context) -> Self::Result {
                    $(let $keep = $keep_e;)?
                    let outcome = $crate::supervisor::run(
                        self,
                        $ctx,
                        stringify!($msg),
                        $crate::supervisor::supervised_handlers!(@counted $($flag)?),
                        |$act, $ctx| $body,
                    );
                    let value = match outcome {
                        Ok(value) => value,
                        Err(reason) => $crate::supervisor::supervised_handlers!(
                            @fallback self reason $($fa $reason $fallback)?
                        ),
                    };
                    $crate::supervisor::supervised_handlers!(@wrap value $($kind)?)
                }
            }
        )*
    };
}
pub(crate) use supervised_handlers;
