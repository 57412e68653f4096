//! Catching panics at an actor's handler boundary, so that a bug in one handler becomes a
//! supervised restart instead of a dead arbiter.
//!
//! actix restarts a supervised actor only when it *stops*; a panic unwinding out of a
//! handler would end the actor's task (and with it the arbiter's other work). Every handler
//! of perfvisor's actors therefore runs its logic through [`guard`] — by way of the one
//! wrapper `crate::supervisor::run` that `supervised_handlers!` puts around each of them —
//! and on `Err` reports `ActorFailed` and stops itself. The storage writer thread guards
//! each command with it too.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`, turning a panic into `Err(message)`.
///
/// The actor's state may be half-updated after a panic; callers must not reuse it, which is
/// why a failed actor stops and is rebuilt from its spec.
pub fn guard<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(payload.as_ref()))
}

/// The text of a panic payload (`&str` or `String`), or a placeholder for other payloads.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic becomes an error carrying its message; a normal return passes through.
    #[test]
    fn guard_catches_panics() {
        assert_eq!(guard(|| 7), Ok(7));
        let err = guard(|| -> u8 { panic!("boom {}", 1) }).unwrap_err();
        assert_eq!(err, "boom 1");
    }
}
