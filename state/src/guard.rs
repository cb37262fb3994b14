//! Panics inside redb, caught and turned into errors. redb trusts the pages
//! it reads; a damaged file can make it fail an assertion or index out of
//! bounds. Whatever stackpipe does with a state file, such a panic must
//! become "the file is damaged", not a crash (and never a crash halfway
//! through a write).

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// Whether this thread is inside [`quietly`]: its panics are expected
    /// and reported as errors, so the panic hook stays silent.
    static QUIET: Cell<u32> = const { Cell::new(0) };
    /// The message of the last quiet panic on this thread.
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Installs, once per process, a panic hook that keeps quiet about panics
/// inside [`quietly`] (remembering their message) and hands every other
/// panic to the hook that was there before.
pub(crate) fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) > 0 {
                let message = match (info.payload().downcast_ref::<&str>(), info.payload().downcast_ref::<String>()) {
                    (Some(s), _) => (*s).to_string(),
                    (_, Some(s)) => s.clone(),
                    _ => "an internal error".to_string(),
                };
                let place = info.location().map(|l| format!(" ({}:{})", l.file(), l.line())).unwrap_or_default();
                LAST.with(|l| *l.borrow_mut() = Some(format!("{message}{place}")));
                return;
            }
            previous(info);
        }));
    });
}

/// Runs `f`; a panic inside it is returned as `Err(message)` instead of
/// unwinding further, and is not printed.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    QUIET.with(|q| q.set(q.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(q.get().saturating_sub(1)));
    result.map_err(|_| LAST.with(|l| l.borrow_mut().take()).unwrap_or_else(|| "an internal error".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message() {
        let r: Result<(), String> = quietly(|| panic!("page {} out of range", 7));
        let e = r.unwrap_err();
        assert!(e.starts_with("page 7 out of range"), "{e}");
        assert_eq!(quietly(|| 5), Ok(5));
    }
}
