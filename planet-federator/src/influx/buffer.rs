//! The write path between jobs and InfluxDB: a bounded buffer of encoded
//! lines drained by one background task in batches, with retries and
//! exponential backoff.
//!
//! - Jobs [`WriterHandle::enqueue`] whole runs. While the buffer is full they
//!   wait for room until their deadline; what still does not fit is dropped
//!   (`reason="buffer_full"`). So across an InfluxDB outage the oldest
//!   points, up to the capacity, are kept, and nothing is lost silently.
//! - A batch leaves the buffer only once InfluxDB accepted it, or rejected
//!   it for good (4xx other than 408/413/429: `reason="rejected"`).
//!   Network errors, timeouts, 408, 429 and 5xx are retried forever with
//!   backoff (honouring `Retry-After`); 413 halves the batch size.
//! - [`Writer::close`] flushes until a deadline (used on SIGTERM); points
//!   left then are counted as `reason="shutdown"`.

use std::{
    collections::VecDeque,
    pin::pin,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{sync::Notify, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::write::{LineSink, WriteError};
use crate::metrics::{DropReason, Metrics};
use planet_cli::errors;

/// Buffer and retry settings.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Points per write request.
    pub batch_size: usize,
    /// Points the buffer holds at most.
    pub capacity: usize,
    /// First retry delay; doubles per failed attempt.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            batch_size: 5000,
            capacity: 200_000,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
        }
    }
}

struct Shared {
    queue: Mutex<VecDeque<String>>,
    /// Signalled when lines are added or the writer is asked to stop.
    data: Notify,
    /// Signalled when lines leave the buffer.
    space: Notify,
    closing: std::sync::atomic::AtomicBool,
    capacity: usize,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, VecDeque<String>> {
        // A panic while holding this lock cannot leave the deque invalid.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set_gauge(&self, len: usize) {
        self.metrics
            .buffer_points
            .set(i64::try_from(len).unwrap_or(i64::MAX));
    }
}

/// What happened to one [`WriterHandle::enqueue`] call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Enqueued {
    pub accepted: usize,
    pub dropped: usize,
}

/// Cheap to clone; used by jobs to hand points to the writer.
#[derive(Clone)]
pub struct WriterHandle {
    shared: Arc<Shared>,
}

impl WriterHandle {
    /// Adds encoded lines (each ending in `\n`), waiting for room until
    /// `deadline`. Lines that still do not fit are dropped and counted.
    pub async fn enqueue(&self, lines: Vec<String>, deadline: Instant) -> Enqueued {
        let mut pending = lines.into_iter().peekable();
        let mut accepted = 0;
        loop {
            let mut space = pin!(self.shared.space.notified());
            space.as_mut().enable();
            {
                let mut queue = self.shared.lock();
                let room = self.shared.capacity.saturating_sub(queue.len());
                let before = queue.len();
                queue.extend(pending.by_ref().take(room));
                accepted += queue.len() - before;
                self.shared.set_gauge(queue.len());
            }
            self.shared.data.notify_one();
            if pending.peek().is_none() {
                return Enqueued {
                    accepted,
                    dropped: 0,
                };
            }
            if self
                .shared
                .closing
                .load(std::sync::atomic::Ordering::Acquire)
            {
                break;
            }
            tokio::select! {
                () = &mut space => {}
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let dropped = pending.count();
        self.shared.metrics.dropped(DropReason::BufferFull, dropped);
        warn!(
            dropped,
            capacity = self.shared.capacity,
            "write buffer full until the job's deadline (InfluxDB down or slow?); points dropped"
        );
        Enqueued { accepted, dropped }
    }

    /// Points waiting to be written.
    pub fn len(&self) -> usize {
        self.shared.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until every buffered point is written (or dropped), or until
    /// `deadline`. Returns how many are still buffered.
    pub async fn flush(&self, deadline: Instant) -> usize {
        loop {
            let mut space = pin!(self.shared.space.notified());
            space.as_mut().enable();
            let len = self.len();
            if len == 0 {
                return 0;
            }
            self.shared.data.notify_one();
            tokio::select! {
                () = &mut space => {}
                () = tokio::time::sleep_until(deadline) => return self.len(),
            }
        }
    }
}

/// The background writer; owns the task.
pub struct Writer {
    handle: WriterHandle,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Writer {
    /// Starts the writer task over `sink`.
    pub fn start<S: LineSink>(sink: S, config: WriterConfig, metrics: Arc<Metrics>) -> Self {
        metrics
            .buffer_capacity
            .set(i64::try_from(config.capacity).unwrap_or(i64::MAX));
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            data: Notify::new(),
            space: Notify::new(),
            closing: std::sync::atomic::AtomicBool::new(false),
            capacity: config.capacity.max(1),
            metrics,
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(sink, config, Arc::clone(&shared), stop.clone()));
        Self {
            handle: WriterHandle { shared },
            stop,
            task,
        }
    }

    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Flushes what is buffered until `deadline`, then stops the task.
    /// Returns the number of points given up on.
    pub async fn close(self, deadline: Instant) -> usize {
        let shared = &self.handle.shared;
        shared
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        shared.data.notify_one();
        self.handle.flush(deadline).await;
        self.stop.cancel();
        let _ = self.task.await;
        let left_now = {
            let mut queue = shared.lock();
            let n = queue.len();
            queue.clear();
            shared.set_gauge(0);
            n
        };
        shared.space.notify_waiters();
        if left_now > 0 {
            shared.metrics.dropped(DropReason::Shutdown, left_now);
            error!(
                points = left_now,
                "shutdown flush deadline passed; buffered points were not written"
            );
        }
        left_now
    }
}

async fn run<S: LineSink>(
    sink: S,
    config: WriterConfig,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let mut batch_size = config.batch_size.max(1);
    let mut attempt: u32 = 0;
    let mut failing_since: Option<Instant> = None;
    loop {
        let mut data = pin!(shared.data.notified());
        data.as_mut().enable();
        let (n, body) = {
            let queue = shared.lock();
            let n = queue.len().min(batch_size);
            let mut body = String::with_capacity(n * 160);
            for line in queue.iter().take(n) {
                body.push_str(line);
            }
            (n, body)
        };
        if n == 0 {
            tokio::select! {
                () = &mut data => continue,
                () = stop.cancelled() => return,
            }
        }
        let result = tokio::select! {
            r = sink.write(body) => r,
            () = stop.cancelled() => return,
        };
        match result {
            Ok(()) => {
                shared.metrics.points_written.inc_by(n as u64);
                shared
                    .metrics
                    .write_requests
                    .with_label_values(&["success"])
                    .inc();
                remove_front(&shared, n);
                if let Some(since) = failing_since.take() {
                    info!(
                        outage_secs = since.elapsed().as_secs(),
                        "InfluxDB writes recovered"
                    );
                }
                attempt = 0;
            }
            Err(WriteError::Status { status, .. })
                if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE && n > 1 =>
            {
                batch_size = (n / 2).max(1);
                warn!(
                    batch_size,
                    "InfluxDB says the request is too large; smaller batches from now on"
                );
            }
            Err(err) if err.is_retryable() => {
                shared.metrics.points_retried.inc_by(n as u64);
                shared
                    .metrics
                    .write_requests
                    .with_label_values(&["retryable"])
                    .inc();
                let delay = err
                    .retry_after()
                    .unwrap_or_else(|| backoff(&config, attempt));
                attempt = attempt.saturating_add(1);
                if failing_since.is_none() {
                    failing_since = Some(Instant::now());
                    warn!(
                        error = %errors::chain(&err),
                        buffered = shared.lock().len(),
                        "InfluxDB write failed; keeping points buffered and retrying"
                    );
                } else {
                    debug!(error = %errors::chain(&err), ?delay, attempt, "InfluxDB write retry failed");
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return,
                }
            }
            Err(err) => {
                let dropped = rejected_count(&err, n);
                shared.metrics.dropped(DropReason::Rejected, dropped);
                shared.metrics.points_written.inc_by((n - dropped) as u64);
                shared
                    .metrics
                    .write_requests
                    .with_label_values(&["rejected"])
                    .inc();
                error!(error = %errors::chain(&err), points = dropped, "InfluxDB rejected a batch; points dropped");
                remove_front(&shared, n);
                attempt = 0;
            }
        }
    }
}

fn remove_front(shared: &Shared, n: usize) {
    {
        let mut queue = shared.lock();
        let n = n.min(queue.len());
        queue.drain(..n);
        shared.set_gauge(queue.len());
    }
    shared.space.notify_waiters();
}

fn backoff(config: &WriterConfig, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(16));
    config
        .retry_initial
        .saturating_mul(factor)
        .min(config.retry_max)
}

/// InfluxDB 1.x answers a partial write with `... dropped=N`; the rest of
/// the batch was written.
fn rejected_count(err: &WriteError, batch: usize) -> usize {
    if let WriteError::Status { body, .. } = err
        && let Some(rest) = body.split("dropped=").nth(1)
    {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<usize>() {
            return n.min(batch);
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use reqwest::StatusCode;

    use super::*;

    /// A sink that fails `fail_first` times with `status`, then records.
    #[derive(Clone, Default)]
    struct FakeSink {
        inner: Arc<FakeInner>,
    }

    #[derive(Default)]
    struct FakeInner {
        bodies: Mutex<Vec<String>>,
        fail_first: AtomicUsize,
        status: Mutex<Option<StatusCode>>,
        attempts: AtomicUsize,
    }

    impl FakeSink {
        fn failing(n: usize, status: StatusCode) -> Self {
            let s = Self::default();
            s.inner.fail_first.store(n, Ordering::SeqCst);
            *s.inner.status.lock().unwrap() = Some(status);
            s
        }
        fn lines(&self) -> Vec<String> {
            self.inner
                .bodies
                .lock()
                .unwrap()
                .iter()
                .flat_map(|b| b.lines().map(str::to_owned).collect::<Vec<_>>())
                .collect()
        }
    }

    impl LineSink for FakeSink {
        async fn write(&self, body: String) -> Result<(), WriteError> {
            self.inner.attempts.fetch_add(1, Ordering::SeqCst);
            if self.inner.fail_first.load(Ordering::SeqCst) > 0 {
                self.inner.fail_first.fetch_sub(1, Ordering::SeqCst);
                let status = self.inner.status.lock().unwrap().unwrap();
                return Err(WriteError::Status {
                    status,
                    body: "partial write: field type conflict dropped=1".into(),
                    retry_after: None,
                });
            }
            self.inner.bodies.lock().unwrap().push(body);
            Ok(())
        }
    }

    fn lines(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m f={i}i\n")).collect()
    }

    fn config(capacity: usize, batch: usize) -> WriterConfig {
        WriterConfig {
            batch_size: batch,
            capacity,
            retry_initial: Duration::from_millis(10),
            retry_max: Duration::from_millis(40),
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn writes_in_batches_in_order() {
        let sink = FakeSink::default();
        let metrics = Arc::new(Metrics::new());
        let writer = Writer::start(sink.clone(), config(100, 4), Arc::clone(&metrics));
        let r = writer.handle().enqueue(lines(10), soon()).await;
        assert_eq!(
            r,
            Enqueued {
                accepted: 10,
                dropped: 0
            }
        );
        assert_eq!(writer.handle().flush(soon()).await, 0);
        assert_eq!(writer.close(soon()).await, 0);
        let got = sink.lines();
        let want: Vec<String> = lines(10).iter().map(|l| l.trim_end().to_owned()).collect();
        assert_eq!(got, want);
        assert!(
            sink.inner
                .bodies
                .lock()
                .unwrap()
                .iter()
                .all(|b| b.lines().count() <= 4)
        );
        assert_eq!(metrics.points_written.get(), 10);
    }

    #[tokio::test]
    async fn retries_until_the_server_recovers() {
        let sink = FakeSink::failing(3, StatusCode::SERVICE_UNAVAILABLE);
        let metrics = Arc::new(Metrics::new());
        let writer = Writer::start(sink.clone(), config(100, 100), Arc::clone(&metrics));
        writer.handle().enqueue(lines(5), soon()).await;
        assert_eq!(writer.handle().flush(soon()).await, 0);
        writer.close(soon()).await;
        assert_eq!(sink.lines().len(), 5);
        assert_eq!(metrics.points_retried.get(), 15);
        assert_eq!(metrics.points_written.get(), 5);
        assert_eq!(metrics.dropped_count(DropReason::Rejected), 0);
    }

    #[tokio::test]
    async fn rejected_batches_are_dropped_and_counted() {
        let sink = FakeSink::failing(1, StatusCode::BAD_REQUEST);
        let metrics = Arc::new(Metrics::new());
        let writer = Writer::start(sink.clone(), config(100, 3), Arc::clone(&metrics));
        writer.handle().enqueue(lines(6), soon()).await;
        assert_eq!(writer.handle().flush(soon()).await, 0);
        writer.close(soon()).await;
        // First batch of 3: partial write, 1 dropped, 2 written by the server.
        assert_eq!(sink.lines().len(), 3);
        assert_eq!(metrics.dropped_count(DropReason::Rejected), 1);
        assert_eq!(metrics.points_written.get(), 5);
    }

    #[tokio::test]
    async fn full_buffer_drops_what_does_not_fit_by_the_deadline() {
        // The server is down for good: nothing leaves the buffer.
        let sink = FakeSink::failing(usize::MAX, StatusCode::SERVICE_UNAVAILABLE);
        let metrics = Arc::new(Metrics::new());
        let writer = Writer::start(sink.clone(), config(8, 4), Arc::clone(&metrics));
        let r = writer
            .handle()
            .enqueue(lines(10), Instant::now() + Duration::from_millis(50))
            .await;
        assert_eq!(
            r,
            Enqueued {
                accepted: 8,
                dropped: 2
            }
        );
        assert_eq!(metrics.dropped_count(DropReason::BufferFull), 2);
        assert_eq!(metrics.buffer_points.get(), 8);
        let left = writer
            .close(Instant::now() + Duration::from_millis(50))
            .await;
        assert_eq!(left, 8);
        assert_eq!(metrics.dropped_count(DropReason::Shutdown), 8);
        assert!(sink.lines().is_empty());
    }

    #[tokio::test]
    async fn enqueue_waits_for_room_while_writes_drain() {
        let sink = FakeSink::default();
        let metrics = Arc::new(Metrics::new());
        let writer = Writer::start(sink.clone(), config(4, 2), Arc::clone(&metrics));
        let r = writer.handle().enqueue(lines(50), soon()).await;
        assert_eq!(
            r,
            Enqueued {
                accepted: 50,
                dropped: 0
            }
        );
        writer.close(soon()).await;
        assert_eq!(sink.lines().len(), 50);
    }

    #[tokio::test]
    async fn too_large_halves_the_batch() {
        let sink = FakeSink::failing(1, StatusCode::PAYLOAD_TOO_LARGE);
        let metrics = Arc::new(Metrics::new());
        let writer = Writer::start(sink.clone(), config(100, 8), Arc::clone(&metrics));
        writer.handle().enqueue(lines(8), soon()).await;
        writer.close(soon()).await;
        assert_eq!(sink.lines().len(), 8);
        assert!(
            sink.inner
                .bodies
                .lock()
                .unwrap()
                .iter()
                .all(|b| b.lines().count() <= 4)
        );
        assert_eq!(metrics.dropped_count(DropReason::Rejected), 0);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = config(1, 1);
        assert_eq!(backoff(&c, 0), Duration::from_millis(10));
        assert_eq!(backoff(&c, 1), Duration::from_millis(20));
        assert_eq!(backoff(&c, 2), Duration::from_millis(40));
        assert_eq!(backoff(&c, 30), Duration::from_millis(40));
    }
}
