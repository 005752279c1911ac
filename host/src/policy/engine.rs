//! The one wasmtime [`Engine`] of the process, the thread that advances its
//! epoch (the CPU deadline of every plugin call), and the per-store limits.
//!
//! Every [`Policies`](super::Policies) shares the same engine while any of
//! them is alive; when the last one is dropped the ticker thread is stopped
//! and joined.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use parking_lot::Mutex;
use wasmtime::{
    Cache, CacheConfig, Config, Engine, ResourceLimiter, Store, StoreLimits, StoreLimitsBuilder,
    UpdateDeadline,
};

/// How often the epoch advances while a call runs: the resolution of the
/// call deadline.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(1);
/// How often it advances while none runs. A call that starts between two
/// advances gets the ticks it missed added to its deadline, so the bound is
/// as exact as at full pace, and an idle server is not woken 1,000 times a second.
const IDLE_TICK: Duration = Duration::from_millis(10);

/// Core instances one store may create. A Rust `wasm32-wasip2` component is
/// its module plus a handful of glue instances; anything far beyond that is
/// not a policy.
const MAX_INSTANCES: usize = 32;
/// Tables one store may create (same reasoning as [`MAX_INSTANCES`]).
const MAX_TABLES: usize = 32;
/// Linear memories one store may create.
const MAX_MEMORIES: usize = 4;
/// Elements one table may grow to; function tables of real guests hold a few
/// hundred.
const MAX_TABLE_ELEMENTS: usize = 65_536;

/// The engine shared by every [`Policies`](super::Policies) alive.
static SHARED: Mutex<Weak<PolicyEngine>> = Mutex::new(Weak::new());

/// The engine plus the ticker thread that makes epoch deadlines fire.
pub(super) struct PolicyEngine {
    /// Compiles and runs every component; cloning it is cheap (an `Arc`).
    engine: Engine,
    /// Dropping it disconnects the ticker's channel, which ends the thread.
    stop: Option<mpsc::Sender<()>>,
    /// Joined on drop so no thread outlives the engine.
    ticker: Option<JoinHandle<()>>,
    clock: Arc<EpochClock>,
    /// Compiled artifacts on disk, keyed by content and engine settings, so
    /// a restart or a re-install of the same component does not recompile.
    cache: Option<Cache>,
}

impl PolicyEngine {
    /// The engine of the process, created on first use (whose `cache_dir`
    /// then holds for as long as the engine lives).
    pub(super) fn shared(cache_dir: Option<&Path>) -> anyhow::Result<Arc<PolicyEngine>> {
        let mut shared = SHARED.lock();
        if let Some(engine) = shared.upgrade() {
            return Ok(engine);
        }
        let engine = Arc::new(PolicyEngine::new(cache_dir)?);
        *shared = Arc::downgrade(&engine);
        Ok(engine)
    }

    fn new(cache_dir: Option<&Path>) -> anyhow::Result<PolicyEngine> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            // Policies are synchronous pure functions: skip the per-store
            // state of component-model async.
            .concurrency_support(false)
            .epoch_interruption(true);
        let cache = match cache_dir {
            Some(dir) => {
                let mut cache_config = CacheConfig::new();
                cache_config.with_directory(dir);
                let cache = Cache::new(cache_config)
                    .map_err(to_anyhow)
                    .with_context(|| {
                        format!("cannot use {} as the plugin compile cache", dir.display())
                    })?;
                config.cache(Some(cache.clone()));
                Some(cache)
            }
            None => None,
        };
        let engine = Engine::new(&config)
            .map_err(to_anyhow)
            .context("cannot create the wasm engine")?;

        let (stop, stopped) = mpsc::channel::<()>();
        let ticking = engine.clone();
        let clock = Arc::new(EpochClock {
            base: Instant::now(),
            advanced: AtomicU64::new(0),
            running: AtomicUsize::new(0),
        });
        let ticker_clock = clock.clone();
        let ticker = thread::Builder::new()
            .name("presence-policy-epoch".into())
            .spawn(move || {
                let clock = ticker_clock;
                let mut advanced = 0;
                loop {
                    let pace = if clock.running.load(Ordering::Relaxed) > 0 {
                        EPOCH_TICK
                    } else {
                        IDLE_TICK
                    };
                    if stopped.recv_timeout(pace) != Err(RecvTimeoutError::Timeout) {
                        return;
                    }
                    // Catch up: the epoch counts ticks of wall time since `base`.
                    let now = clock.now();
                    while advanced < now {
                        ticking.increment_epoch();
                        advanced += 1;
                    }
                    clock.advanced.store(advanced, Ordering::Release);
                }
            })
            .context("cannot start the epoch ticker thread")?;

        Ok(PolicyEngine {
            engine,
            stop: Some(stop),
            ticker: Some(ticker),
            clock,
            cache,
        })
    }

    /// (hits, misses) of the compile cache, if there is one.
    pub(super) fn cache_stats(&self) -> Option<(usize, usize)> {
        self.cache
            .as_ref()
            .map(|c| (c.cache_hits(), c.cache_misses()))
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Marks a call as running (the ticker keeps full pace) until dropped.
    pub(super) fn running(&self) -> Running<'_> {
        self.clock.running.fetch_add(1, Ordering::Relaxed);
        Running(&self.clock)
    }

    /// The epoch deadline `ticks` from now, counting the ticks the epoch
    /// has not caught up with yet.
    pub(super) fn deadline(&self, ticks: u64) -> u64 {
        let lag = self
            .clock
            .now()
            .saturating_sub(self.clock.advanced.load(Ordering::Acquire));
        ticks.saturating_add(lag)
    }

    /// A fresh store whose memories and tables are capped by `limits`.
    pub(super) fn store(&self, limits: &Limits) -> Store<StoreState> {
        let state = StoreState {
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory)
                .table_elements(MAX_TABLE_ELEMENTS)
                .instances(MAX_INSTANCES)
                .tables(MAX_TABLES)
                .memories(MAX_MEMORIES)
                // A clear trap instead of a guest that misreads a failed grow.
                .trap_on_grow_failure(true)
                .build(),
            peak_memory: 0,
            output: Vec::new(),
            budget: limits.cpu,
            started: thread_cpu_time(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        // The epoch measures wall time; the budget is CPU time. A call that
        // reaches its deadline having waited for the CPU (a busy host) gets
        // the rest of its budget instead of a trap.
        store.epoch_deadline_callback(|ctx| {
            let s = ctx.data();
            let used = thread_cpu_time().saturating_sub(s.started);
            match s.budget.checked_sub(used) {
                Some(left) if !left.is_zero() => Ok(UpdateDeadline::Continue(ticks(left))),
                _ => Err(wasmtime::Error::msg(format!(
                    "the call used up its {} ms of CPU",
                    s.budget.as_millis()
                ))),
            }
        });
        store.set_epoch_deadline(self.deadline(limits.deadline_ticks));
        store
    }

    /// Starts the deadline of a call (or instantiation) on `store` now.
    pub(super) fn start_call(&self, store: &mut Store<StoreState>, limits: &Limits) {
        store.data_mut().started = thread_cpu_time();
        store.set_epoch_deadline(self.deadline(limits.deadline_ticks));
    }
}

/// Wall time in epoch ticks, and how far the engine's epoch has got.
struct EpochClock {
    base: Instant,
    /// Ticks the epoch has advanced (it lags `now()` between advances).
    advanced: AtomicU64,
    /// Calls running now.
    running: AtomicUsize,
}

impl EpochClock {
    fn now(&self) -> u64 {
        let elapsed = self.base.elapsed().as_micros() / EPOCH_TICK.as_micros();
        u64::try_from(elapsed).unwrap_or(u64::MAX)
    }
}

pub(super) struct Running<'a>(&'a EpochClock);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// What one store carries: its resource limits, the high-water mark of its
/// memory (for operators), and what the plugin wrote to stderr or stdout
/// since the host last read it (see `wasi`).
pub(super) struct StoreState {
    limits: StoreLimits,
    /// Largest linear memory this store was allowed to grow to, in bytes.
    pub(super) peak_memory: usize,
    pub(super) output: Vec<u8>,
    /// CPU a call may use, and the calling thread's CPU time when it began.
    budget: Duration,
    started: Duration,
}

/// CPU time the calling thread has used; wall time where the platform has
/// no per-thread clock.
fn thread_cpu_time() -> Duration {
    #[cfg(unix)]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
    }
    #[cfg(not(unix))]
    {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed()
    }
}

/// Epoch ticks covering `d`, at least one.
fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_micros().div_ceil(EPOCH_TICK.as_micros()))
        .unwrap_or(u64::MAX)
        .max(1)
}

impl ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.peak_memory = self.peak_memory.max(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Per-store budget derived from [`PolicyConfig`](super::PolicyConfig).
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    /// Bytes each linear memory may grow to.
    pub(super) memory: usize,
    /// Epoch ticks after which a call's CPU time is first looked at.
    pub(super) deadline_ticks: u64,
    /// CPU time a single call (or instantiation) may use.
    pub(super) cpu: Duration,
}

/// CPU deadline while a component is validated: validation checks
/// behaviour (a first call also warms caches), and the per-call deadline
/// applies once it serves.
pub(super) const VALIDATION_DEADLINE: Duration = Duration::from_secs(1);

impl Limits {
    /// The same memory cap with [`VALIDATION_DEADLINE`].
    pub(super) fn validating(self) -> Limits {
        Limits::new(self.memory, VALIDATION_DEADLINE)
    }

    pub(super) fn new(memory: usize, call_deadline: Duration) -> Limits {
        // The current tick is already partly over when a call starts, so one
        // more tick keeps the deadline a lower bound.
        let ticks = call_deadline.as_micros().div_ceil(EPOCH_TICK.as_micros()) + 1;
        Limits {
            memory,
            deadline_ticks: u64::try_from(ticks).unwrap_or(u64::MAX),
            cpu: call_deadline,
        }
    }
}

/// `wasmtime::Error` is not `std::error::Error` without wasmtime's `anyhow`
/// feature; keep its chain of causes when crossing into `anyhow`.
pub(super) fn to_anyhow(error: wasmtime::Error) -> anyhow::Error {
    anyhow::Error::from_boxed(error.into_boxed_dyn_error())
}
