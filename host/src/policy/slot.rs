//! One loaded component: validated and pre-instantiated once, then called
//! through a small pool of reusable instances, with its call and failure
//! counts.
//!
//! A [`SlotCell`] holds the component currently serving a slot behind an
//! `ArcSwap`, so a replacement can be swapped in while calls in flight finish
//! on the component they started with.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::{ArcSwap, Guard};
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, MutexGuard};
use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre, Linker};

use super::engine::{Limits, PolicyEngine, StoreState, to_anyhow};
use super::{
    ACCEPTED_WIT, AUTO_ROLLBACK_AFTER, AUTO_ROLLBACK_RATE, Failure, MAX_COMPONENT_BYTES,
    RolledBack, Slot, SlotInfo, wasi,
};

/// Most instances kept per component: enough for every core to call at once
/// without waiting; each costs one store and its linear memory.
const MAX_POOL: usize = 8;

/// What ties a WIT world to its generated bindings (implemented in
/// `bindings`, the only module that sees generated types).
pub(super) trait World: 'static {
    const SLOT: Slot;
    /// The fully qualified world, as operators see it.
    const NAME: &'static str;
    /// The world's `InstancePre` wrapper; building it type-checks the exports.
    type Pre: Send + Sync;
    /// The world's exports of one instance.
    type Instance: Send;
    /// What the world answers once per component (limits, config).
    type Cached: Copy + Send + Sync;

    fn pre(pre: InstancePre<StoreState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(
        pre: &Self::Pre,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<Self::Instance>;
    fn cache(
        instance: &Self::Instance,
        store: &mut Store<StoreState>,
    ) -> wasmtime::Result<Self::Cached>;
}

/// A failed plugin call: already logged and counted; the caller picks the
/// fallback. Says why: a panic's message, the import called, the limit hit.
#[derive(Debug)]
pub(super) struct Trapped {
    pub(super) why: String,
}

/// Lines of plugin output logged per component and second; the rest are
/// counted as dropped.
const LOG_LINES_PER_SECOND: u32 = 20;

/// One instance ready for calls, with the store that owns it.
struct Live<W: World> {
    store: Store<StoreState>,
    instance: W::Instance,
}

/// A component loaded into a slot.
pub(super) struct Loaded<W: World> {
    /// Keeps the engine (and its epoch ticker) alive as long as this runs.
    engine: Arc<PolicyEngine>,
    /// Instantiates without re-resolving imports or re-checking types.
    pre: W::Pre,
    /// Budget of every store of this component.
    limits: Limits,
    /// Answered once at load; never changes for this component.
    cached: W::Cached,
    /// Reusable instances; `None` until first needed or after a failure.
    pool: Box<[Mutex<Option<Live<W>>>]>,
    /// Which entry to wait on when every one is busy.
    next: AtomicUsize,
    /// `"builtin"` or the file the component came from.
    source: String,
    /// Hex SHA-256 of the component bytes: what operators compare.
    pub(super) sha256: String,
    loaded_at: DateTime<Utc>,
    calls: AtomicU64,
    failures: AtomicU64,
    /// Per exported function, failures since its last accepted answer; see
    /// [`AUTO_ROLLBACK_AFTER`]. Per function, so a working `on-typing-start`
    /// does not hide a `format-typers` that always fails.
    streaks: [AtomicU32; STREAKS],
    latency: Latency,
    /// Largest linear memory any instance grew to, in bytes.
    peak_memory: AtomicUsize,
    last_failure: Mutex<Option<Failure>>,
    /// The outcomes of the latest calls, newest in bit 0 (1: failed); see
    /// [`AUTO_ROLLBACK_RATE`].
    recent: Mutex<Recent>,
    /// Whether `recent` holds a failure: while it does not, a success
    /// changes nothing there, and an accepted call takes no lock.
    recent_failed: AtomicBool,
    /// The second (since loading) whose output lines are being counted, and
    /// how many were logged in it.
    log_second: AtomicU64,
    log_lines: AtomicU32,
}

impl<W: World> Loaded<W> {
    /// Compiles and validates `bytes` as a component of world `W`: it must
    /// implement the world, instantiate with every import trapping but the
    /// standard library's stand-ins (`wasi`), and answer its
    /// once-per-component calls.
    pub(super) fn load(
        engine: &Arc<PolicyEngine>,
        limits: Limits,
        bytes: &[u8],
        source: String,
    ) -> anyhow::Result<Self> {
        anyhow::ensure!(
            bytes.len() <= MAX_COMPONENT_BYTES,
            "the component is {} bytes, more than the {MAX_COMPONENT_BYTES} allowed",
            bytes.len()
        );
        let sha256 = hex::encode(Sha256::digest(bytes));
        let wasm = engine.engine();
        let component =
            Component::from_binary(wasm, bytes).map_err(|e| not_a_component(bytes, e))?;
        let mut linker = Linker::new(wasm);
        wasi::define(&mut linker, &component)?;
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(to_anyhow)
            .context("cannot stub the component's imports")?;
        let not_this = || {
            format!(
                "not a {} component (this server accepts {ACCEPTED_WIT})",
                W::NAME
            )
        };
        let pre = linker
            .instantiate_pre(&component)
            .map_err(to_anyhow)
            .with_context(not_this)?;
        let pre = match W::pre(pre.clone()) {
            Ok(pre) => pre,
            Err(e) => match super::bindings::slot_of(&pre) {
                Some((slot, world)) => anyhow::bail!(
                    "this is a {slot} plugin ({world}), not a {} one: install it into the {slot} slot",
                    W::SLOT
                ),
                None => return Err(to_anyhow(e).context(not_this())),
            },
        };

        let mut store = engine.store(&limits);
        let instance = W::instantiate(&pre, &mut store)
            .map_err(|e| anyhow::anyhow!(explained(e, &mut store)))
            .context("instantiation failed")?;
        engine.start_call(&mut store, &limits);
        let cached = W::cache(&instance, &mut store)
            .map_err(|e| anyhow::anyhow!(explained(e, &mut store)))
            .context("its configuration call failed")?;
        store.data_mut().output.clear();

        let size = thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let pool: Box<[_]> = (0..size.clamp(1, MAX_POOL))
            .map(|_| Mutex::new(None))
            .collect();
        let peak = store.data().peak_memory;
        // The validated instance serves the first calls.
        *pool[0].lock() = Some(Live { store, instance });

        tracing::info!(slot = W::SLOT.as_str(), %sha256, %source, "policy loaded");
        Ok(Loaded {
            engine: Arc::clone(engine),
            pre,
            limits,
            cached,
            pool,
            next: AtomicUsize::new(0),
            source,
            sha256,
            loaded_at: Utc::now(),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            streaks: [const { AtomicU32::new(0) }; STREAKS],
            latency: Latency::default(),
            peak_memory: AtomicUsize::new(peak),
            last_failure: Mutex::new(None),
            recent: Mutex::new(Recent::default()),
            recent_failed: AtomicBool::new(false),
            log_second: AtomicU64::new(0),
            log_lines: AtomicU32::new(0),
        })
    }

    /// The component validated under [`Limits::validating`] now serves
    /// under `limits`.
    pub(super) fn serving(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub(super) fn cached(&self) -> W::Cached {
        self.cached
    }

    /// Runs `call` on a pooled instance under the call deadline. A trap
    /// (deadline, memory cap, guest panic, import use) is logged and counted,
    /// and the instance discarded: the next call instantiates a fresh one.
    pub(super) fn call<R>(
        &self,
        function: &'static str,
        call: impl FnOnce(&W::Instance, &mut Store<StoreState>) -> wasmtime::Result<R>,
    ) -> Result<R, Trapped> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let running = self.engine.running();
        let mut entry = self.lock_entry();
        let live = match entry.take() {
            Some(live) => live,
            None => {
                let mut store = self.engine.store(&self.limits);
                match W::instantiate(&self.pre, &mut store) {
                    Ok(instance) => Live { store, instance },
                    Err(error) => {
                        let why = explained(error, &mut store);
                        return Err(self.failed(function, why));
                    }
                }
            }
        };
        let Live {
            mut store,
            instance,
        } = live;
        self.engine.start_call(&mut store, &self.limits);
        let started = Instant::now();
        let result = call(&instance, &mut store);
        drop(running);
        self.latency.record(started.elapsed());
        self.peak_memory
            .fetch_max(store.data().peak_memory, Ordering::Relaxed);
        match result {
            Ok(result) => {
                if !store.data().output.is_empty() {
                    let output = std::mem::take(&mut store.data_mut().output);
                    self.log_output(function, &output);
                }
                *entry = Some(Live { store, instance });
                Ok(result)
            }
            Err(error) => {
                let why = explained(error, &mut store);
                Err(self.failed(function, why))
            }
        }
    }

    /// What a call wrote to stderr or stdout, into the host's log under the
    /// component's sha256, a bounded number of lines per second.
    fn log_output(&self, function: &'static str, output: &[u8]) {
        let second = self
            .loaded_at
            .signed_duration_since(Utc::now())
            .num_seconds()
            .unsigned_abs();
        if self.log_second.swap(second, Ordering::Relaxed) != second {
            self.log_lines.store(0, Ordering::Relaxed);
        }
        for line in String::from_utf8_lossy(output)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            if self.log_lines.fetch_add(1, Ordering::Relaxed) >= LOG_LINES_PER_SECOND {
                return;
            }
            tracing::info!(
                slot = W::SLOT.as_str(),
                sha256 = %self.sha256,
                function,
                "plugin: {line}"
            );
        }
    }

    /// Counts and logs a call whose answer was unusable though it returned.
    /// The caller found the answer of `function` usable: its streak ends.
    pub(super) fn accept(&self, function: &'static str) {
        self.streaks[streak_index(function)].store(0, Ordering::Relaxed);
        if self.recent_failed.load(Ordering::Relaxed) {
            self.record(false);
        }
    }

    fn record(&self, failed: bool) {
        let mut recent = self.recent.lock();
        recent.push(failed);
        self.recent_failed
            .store(recent.failed() > 0, Ordering::Relaxed);
    }

    pub(super) fn reject(&self, function: &'static str, reason: &str) -> Trapped {
        self.failed(function, format!("unusable answer: {reason}"))
    }

    fn failed(&self, function: &'static str, why: String) -> Trapped {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.streaks[streak_index(function)].fetch_add(1, Ordering::Relaxed);
        self.record(true);
        tracing::warn!(
            slot = W::SLOT.as_str(),
            sha256 = %self.sha256,
            function,
            error = %why,
            "policy call failed; using the built-in fallback"
        );
        *self.last_failure.lock() = Some(Failure {
            at: Utc::now(),
            function,
            message: why.clone(),
        });
        Trapped { why }
    }

    /// The first free entry, so a quiet process keeps reusing one warm
    /// instance; if all are busy, waits on one in turn.
    fn lock_entry(&self) -> MutexGuard<'_, Option<Live<W>>> {
        for entry in self.pool.iter() {
            if let Some(guard) = entry.try_lock() {
                return guard;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        self.pool[i].lock()
    }

    pub(super) fn info(&self) -> SlotInfo {
        SlotInfo {
            slot: W::SLOT,
            world: W::NAME,
            source: self.source.clone(),
            sha256: self.sha256.clone(),
            loaded_at: self.loaded_at,
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            latency_p50: self.latency.quantile(0.50),
            latency_p99: self.latency.quantile(0.99),
            peak_memory: self.peak_memory.load(Ordering::Relaxed),
            last_failure: self.last_failure.lock().clone(),
            rolled_back: Vec::new(),
        }
    }

    /// Why this component should stop serving, if it should: too many
    /// failures of one function in a row, or too many among its latest calls.
    fn failing(&self) -> Option<String> {
        if let Some(i) = self
            .streaks
            .iter()
            .position(|s| s.load(Ordering::Relaxed) >= AUTO_ROLLBACK_AFTER)
        {
            let function = STREAK_FUNCTIONS.get(i).copied().unwrap_or("a function");
            return Some(format!(
                "{AUTO_ROLLBACK_AFTER} failed calls in a row of {function}"
            ));
        }
        let (failed, of) = AUTO_ROLLBACK_RATE;
        let recent = self.recent.lock().failed();
        (recent >= failed).then(|| format!("{recent} of its last {of} calls failed"))
    }
}

/// Outcomes of the last [`AUTO_ROLLBACK_RATE`]`.1` calls, one bit each.
#[derive(Default)]
struct Recent {
    bits: u128,
}

impl Recent {
    fn push(&mut self, failed: bool) {
        let window = AUTO_ROLLBACK_RATE.1;
        self.bits = ((self.bits << 1) | u128::from(failed)) & ((1u128 << window) - 1);
    }

    fn failed(&self) -> u32 {
        self.bits.count_ones()
    }
}

/// Why `bytes` did not compile, in one line, without the parser's dump.
fn not_a_component(bytes: &[u8], error: wasmtime::Error) -> anyhow::Error {
    const MAGIC: &[u8] = b"\0asm";
    if !bytes.starts_with(MAGIC) {
        return anyhow::anyhow!(
            "not a WebAssembly component: the file does not start with `\\0asm`"
        );
    }
    // Bytes 4..8: version 1 and layer 0 make a core module; a component is
    // layer 1.
    if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        return anyhow::anyhow!(
            "a core WebAssembly module, not a component: build the plugin for `--target wasm32-wasip2`"
        );
    }
    let cause = to_anyhow(error).root_cause().to_string();
    let cause = cause.lines().next().unwrap_or_default().to_owned();
    anyhow::anyhow!("not a valid WebAssembly component: {cause}")
}

/// Why a call failed, in one line: the guest's panic message when it wrote
/// one, else the error's cause (a trap, an import that is not provided, a
/// limit), without the wasm backtrace around it.
fn explained(error: wasmtime::Error, store: &mut Store<StoreState>) -> String {
    let output = std::mem::take(&mut store.data_mut().output);
    wasi::why(&output).unwrap_or_else(|| to_anyhow(error).root_cause().to_string())
}

/// Functions a world exports that are called per event; others share a slot.
const STREAK_FUNCTIONS: [&str; 3] = ["on-typing-start", "format-typers", "view"];
const STREAKS: usize = STREAK_FUNCTIONS.len() + 1;

fn streak_index(function: &str) -> usize {
    STREAK_FUNCTIONS
        .iter()
        .position(|f| *f == function)
        .unwrap_or(STREAK_FUNCTIONS.len())
}

/// Call durations in log-linear buckets (4 per power of two of nanoseconds),
/// so percentiles cost a few atomics per call and no locks.
struct Latency {
    buckets: Box<[AtomicU64]>,
}

const SUB_BUCKETS: u32 = 4;

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: (0..64 * SUB_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Latency {
    fn index(nanos: u64) -> usize {
        let n = nanos.max(1);
        let exp = 63 - n.leading_zeros();
        let sub = if exp >= 2 { (n >> (exp - 2)) & 3 } else { 0 };
        (exp * SUB_BUCKETS) as usize + sub as usize
    }

    /// The upper bound of bucket `i`.
    fn bound(i: usize) -> Duration {
        let (exp, sub) = ((i as u32) / SUB_BUCKETS, (i as u32) % SUB_BUCKETS);
        let base = 1u128 << exp;
        let nanos = base + base * (u128::from(sub) + 1) / u128::from(SUB_BUCKETS);
        Duration::from_nanos(nanos.min(u128::from(u64::MAX)) as u64)
    }

    fn record(&self, d: Duration) {
        let i = Self::index(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The smallest bucket bound below which `q` of the calls fell.
    fn quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let target = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        counts
            .iter()
            .position(|c| {
                seen += c;
                seen >= target
            })
            .map(Self::bound)
    }
}

/// Previous components kept per slot for rollback.
const HISTORY: usize = 8;

/// The component serving one slot, replaceable atomically, with the ones it
/// replaced for rollback.
pub(super) struct SlotCell<W: World> {
    current: ArcSwap<Loaded<W>>,
    /// Most recent last; the lock also serializes replacements.
    history: Mutex<Vec<Arc<Loaded<W>>>>,
    /// Components rolled back automatically, most recent last, with their
    /// failures as they stood.
    rolled_back: Mutex<Vec<RolledBack>>,
}

impl<W: World> SlotCell<W> {
    pub(super) fn new(loaded: Loaded<W>) -> Self {
        SlotCell {
            current: ArcSwap::from_pointee(loaded),
            history: Mutex::new(Vec::new()),
            rolled_back: Mutex::new(Vec::new()),
        }
    }

    /// What serves the slot, and what was rolled back automatically.
    pub(super) fn info(&self) -> SlotInfo {
        let mut info = self.current().info();
        info.rolled_back = self.rolled_back.lock().clone();
        info
    }

    /// The component to call now; it stays alive for the guard's lifetime
    /// even if the slot is swapped meanwhile.
    pub(super) fn current(&self) -> Guard<Arc<Loaded<W>>> {
        self.current.load()
    }

    /// Serves `loaded` from now on; calls in flight finish on the old one.
    pub(super) fn replace(&self, loaded: Loaded<W>) -> SlotInfo {
        let mut history = self.history.lock();
        let loaded = Arc::new(loaded);
        let info = loaded.info();
        history.push(self.current.swap(loaded));
        if history.len() > HISTORY {
            history.remove(0);
        }
        tracing::info!(slot = W::SLOT.as_str(), sha256 = %info.sha256, source = %info.source, "policy swapped in");
        info
    }

    /// After a failed call: when `failed` has failed [`AUTO_ROLLBACK_AFTER`]
    /// times in a row or too often lately ([`AUTO_ROLLBACK_RATE`]) and still
    /// serves, go back to the component before it; returns that one's
    /// sha256 then.
    pub(super) fn after_failure(&self, failed: &Arc<Loaded<W>>) -> Option<String> {
        let reason = failed.failing()?;
        let mut history = self.history.lock();
        if !Arc::ptr_eq(&self.current.load(), failed) {
            return None; // Already replaced or rolled back.
        }
        // Nothing to go back to: callers keep getting fallbacks.
        let previous = history.pop()?;
        tracing::error!(
            slot = W::SLOT.as_str(),
            failing = %failed.sha256,
            restored = %previous.sha256,
            "policy rolled back automatically: {reason}"
        );
        let mut kept = self.rolled_back.lock();
        kept.push(RolledBack {
            at: Utc::now(),
            reason,
            component: Box::new(failed.info()),
        });
        if kept.len() > HISTORY {
            kept.remove(0);
        }
        let restored = previous.sha256.clone();
        self.current.store(previous);
        Some(restored)
    }

    /// Serves again the kept component with this hash, if there is one.
    pub(super) fn restore(&self, sha256: &str) -> Option<SlotInfo> {
        let mut history = self.history.lock();
        let i = history.iter().rposition(|l| l.sha256 == sha256)?;
        let restored = history.remove(i);
        let info = restored.info();
        history.push(self.current.swap(restored));
        tracing::info!(slot = W::SLOT.as_str(), %sha256, "policy restored");
        Some(info)
    }

    /// Goes back to the component this one replaced, if any.
    pub(super) fn rollback(&self) -> Option<SlotInfo> {
        let mut history = self.history.lock();
        let previous = history.pop()?;
        let info = previous.info();
        self.current.store(previous);
        tracing::info!(slot = W::SLOT.as_str(), sha256 = %info.sha256, "policy rolled back");
        Some(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_are_bucket_bounds_within_a_quarter() {
        let l = Latency::default();
        assert_eq!(l.quantile(0.5), None);
        for _ in 0..98 {
            l.record(Duration::from_nanos(400));
        }
        l.record(Duration::from_micros(50));
        l.record(Duration::from_millis(3));
        let p50 = l.quantile(0.50).unwrap();
        assert!(
            p50 >= Duration::from_nanos(400) && p50 <= Duration::from_nanos(500),
            "{p50:?}"
        );
        let p99 = l.quantile(0.99).unwrap();
        assert!(
            p99 >= Duration::from_micros(50) && p99 <= Duration::from_micros(63),
            "{p99:?}"
        );
        assert!(l.quantile(1.0).unwrap() >= Duration::from_millis(3));
    }
}
