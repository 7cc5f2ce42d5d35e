//! The one loop every periodic task runs: a run now, then one per
//! interval, until shutdown.

use std::{future::Future, time::Duration};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// A task that runs once per interval.
pub trait Periodic: Send {
    /// One run. A run in progress is abandoned on shutdown.
    fn run(&mut self) -> impl Future<Output = ()> + Send;

    /// Waits for, and handles, work that arrives between runs (e.g. records
    /// a kernel ring buffer announces). The default has none.
    fn between(&mut self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }

    /// Called once after shutdown, e.g. to hand over what is still pending.
    fn finish(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Runs `task` now and then every `interval` (a run that overruns delays
/// the next one; missed runs are not bunched), until `shutdown`.
pub async fn run(mut task: impl Periodic, interval: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
            () = task.between() => continue,
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            () = task.run() => {}
        }
    }
    task.finish().await;
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    };

    use super::*;

    struct Counter {
        runs: Arc<AtomicU32>,
        finished: Arc<AtomicU32>,
        stop_after: u32,
        shutdown: CancellationToken,
    }

    impl Periodic for Counter {
        async fn run(&mut self) {
            if self.runs.fetch_add(1, Ordering::SeqCst) + 1 == self.stop_after {
                self.shutdown.cancel();
            }
        }

        async fn finish(&mut self) {
            self.finished.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runs_at_once_then_every_interval_and_finishes_once() {
        let shutdown = CancellationToken::new();
        let (runs, finished) = (Arc::default(), Arc::default());
        let task = Counter {
            runs: Arc::clone(&runs),
            finished: Arc::clone(&finished),
            stop_after: 3,
            shutdown: shutdown.clone(),
        };
        let started = tokio::time::Instant::now();
        run(task, Duration::from_secs(10), shutdown).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert_eq!(started.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_abandons_a_run_in_progress() {
        struct Stuck;
        impl Periodic for Stuck {
            async fn run(&mut self) {
                std::future::pending::<()>().await;
            }
        }
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stop.cancel();
        });
        run(Stuck, Duration::from_secs(10), shutdown).await;
    }
}
