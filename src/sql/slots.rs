//! A cap on the statements that run at once, shared by every front end
//! (`TIMEFUSION_MAX_CONCURRENT_STATEMENTS`): a statement takes a slot before it is planned and
//! keeps it until its last row is sent; past the cap it waits for a slot, for at most
//! `TIMEFUSION_STATEMENT_QUEUE_TIMEOUT_MS`, and then gets SQLSTATE 53000 (Flight:
//! `RESOURCE_EXHAUSTED`). Waiting is interrupted like running: by a cancel request or the
//! statement timeout. Literal `INSERT`s and `COPY` data take no slot: the buffer's budget
//! bounds them. Tests: `tests/e2e/limits.rs`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{SqlError, SqlState};

/// The slots statements run in.
#[derive(Debug)]
pub struct Slots {
    free: Arc<Semaphore>,
    max: usize,
    queue_timeout: Duration,
}

/// One running statement's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        crate::metrics::get().statements_running.dec();
    }
}

impl Slots {
    pub fn new(max: usize, queue_timeout: Duration) -> Slots {
        Slots {
            free: Arc::new(Semaphore::new(max)),
            max,
            queue_timeout,
        }
    }

    /// A slot, once one is free; 53000 when none frees within the queue timeout.
    pub async fn acquire(&self) -> Result<Slot, SqlError> {
        let waited = tokio::time::timeout(self.queue_timeout, self.free.clone().acquire_owned());
        match waited.await {
            Ok(Ok(permit)) => {
                crate::metrics::get().statements_running.inc();
                Ok(Slot { _permit: permit })
            }
            Ok(Err(_)) => Err(SqlError::new(
                SqlState::ADMIN_SHUTDOWN,
                "the server is shutting down",
            )),
            Err(_) => Err(SqlError::new(
                SqlState::INSUFFICIENT_RESOURCES,
                format!(
                    "too many statements running: {} at once (TIMEFUSION_MAX_CONCURRENT_STATEMENTS), \
                     and none finished within {} ms (TIMEFUSION_STATEMENT_QUEUE_TIMEOUT_MS); retry later",
                    self.max,
                    self.queue_timeout.as_millis()
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_statement_past_the_cap_waits_for_a_slot_then_gets_53000() {
        let slots = Slots::new(1, Duration::from_millis(50));
        let first = slots.acquire().await.expect("a free slot");
        let refused = slots.acquire().await.expect_err("no slot frees");
        assert_eq!(refused.state, SqlState::INSUFFICIENT_RESOURCES);
        assert!(
            refused
                .message
                .contains("TIMEFUSION_MAX_CONCURRENT_STATEMENTS")
        );
        let waiting = tokio::spawn(async move {
            let slots = slots;
            slots.acquire().await.map(|_| ())
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(first);
        assert!(
            waiting.await.expect("task").is_ok(),
            "the freed slot is taken"
        );
    }
}
