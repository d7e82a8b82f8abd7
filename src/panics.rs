//! Panics contained: a panic below a statement, a Flight call or a background task ends that
//! piece of work with an error, never the process or a connection. Unwinding (the default
//! `panic` strategy, which no profile in `Cargo.toml` changes) makes this possible; the hook
//! [`install_hook`] sets logs each panic once, where it happens, with its location.
//!
//! Catching is for bugs, ours or a library's: nothing here is a way to report errors, and
//! state a panic interrupted is treated as unknown (a flush that panicked is settled as one
//! whose outcome was lost, `engine::core::Core::resolve`). Tests: `panics::tests`,
//! `tests/e2e/limits.rs::a_panic_ends_one_statement_not_the_connection_or_the_server`.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::FutureExt;

/// Panics caught since start.
static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// A stream that ends with `on_panic`'s error when polling it panics.
pub fn catch_stream<S, T, E>(
    stream: S,
    on_panic: fn(String) -> E,
) -> impl futures::Stream<Item = Result<T, E>>
where
    S: futures::Stream<Item = Result<T, E>> + Unpin,
{
    let mut stream = Some(stream);
    futures::stream::poll_fn(move |cx| {
        let Some(inner) = stream.as_mut() else {
            return std::task::Poll::Ready(None);
        };
        match catch_now(|| futures::StreamExt::poll_next_unpin(inner, cx)) {
            Ok(next) => next,
            Err(message) => {
                stream = None;
                std::task::Poll::Ready(Some(Err(on_panic(message))))
            }
        }
    })
}

/// How many panics have been caught since the process started.
pub fn caught() -> u64 {
    CAUGHT.load(Ordering::Relaxed)
}

/// Runs `work` to completion, or returns the message of the panic that ended it.
pub async fn catch<F: Future>(work: F) -> Result<F::Output, String> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(caught_one)
}

/// Runs `work`, or returns the message of the panic that ended it (for a `poll`).
pub fn catch_now<T>(work: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).map_err(caught_one)
}

fn caught_one(payload: Box<dyn Any + Send>) -> String {
    CAUGHT.fetch_add(1, Ordering::Relaxed);
    message(payload.as_ref())
}

/// The message a panic was raised with (`panic!("…")`, `unwrap` on `None` …).
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Logs every panic as an `ERROR` event of target `timefusion::panic`, with where it happened
/// and, with `RUST_BACKTRACE=1`, the backtrace, instead of std's lines on stderr.
pub fn install_hook() {
    std::panic::set_hook(Box::new(|info| {
        let backtrace = std::backtrace::Backtrace::capture();
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => tracing::error!(
                target: "timefusion::panic",
                "thread '{thread}' {info}\n{backtrace}"
            ),
            _ => tracing::error!(target: "timefusion::panic", "thread '{thread}' {info}"),
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_caught_panic_is_counted_and_gives_its_message() {
        let before = caught();
        let result = catch(async { panic!("boom {}", 7) }).await;
        assert_eq!(result, Err::<(), _>("boom 7".to_string()));
        assert_eq!(catch(async { 5 }).await, Ok(5));
        let values: Vec<u8> = Vec::new();
        let result = catch_now(|| values.first().copied().expect("a value"));
        assert_eq!(result, Err("a value".to_string()));
        assert!(caught() >= before + 2);
    }
}
