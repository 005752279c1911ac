//! One loaded component: validated and pre-instantiated once, then called
//! through a small pool of reusable instances, with its call and failure
//! counts.
//!
//! A [`SlotCell`] holds the component currently serving a slot behind an
//! `ArcSwap`, so a replacement can be swapped in while calls in flight finish
//! on the component they started with.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;

use anyhow::Context as _;
use arc_swap::{ArcSwap, Guard};
use chrono::{DateTime, Utc};
use parking_lot::{Mutex, MutexGuard};
use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::{Component, InstancePre, Linker};

use super::engine::{Limits, PolicyEngine, StoreState, to_anyhow};
use super::{MAX_COMPONENT_BYTES, Slot, SlotInfo};

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
/// fallback.
#[derive(Debug)]
pub(super) struct Trapped;

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
    sha256: String,
    loaded_at: DateTime<Utc>,
    calls: AtomicU64,
    failures: AtomicU64,
}

impl<W: World> Loaded<W> {
    /// Compiles and validates `bytes` as a component of world `W`: it must
    /// implement the world, instantiate with every import trapping (no WASI,
    /// no host functions), and answer its once-per-component calls.
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
        let component = Component::from_binary(wasm, bytes)
            .map_err(to_anyhow)
            .context("not a valid WebAssembly component")?;
        let mut linker = Linker::new(wasm);
        linker
            .define_unknown_imports_as_traps(&component)
            .map_err(to_anyhow)
            .context("cannot stub the component's imports")?;
        let pre = linker
            .instantiate_pre(&component)
            .and_then(W::pre)
            .map_err(to_anyhow)
            .with_context(|| format!("not a {} component", W::NAME))?;

        let mut store = engine.store(&limits);
        let instance = W::instantiate(&pre, &mut store)
            .map_err(to_anyhow)
            .context("instantiation failed")?;
        store.set_epoch_deadline(limits.deadline_ticks);
        let cached = W::cache(&instance, &mut store)
            .map_err(to_anyhow)
            .context("its configuration call failed")?;

        let size = thread::available_parallelism().map_or(1, NonZeroUsize::get);
        let pool: Box<[_]> = (0..size.clamp(1, MAX_POOL))
            .map(|_| Mutex::new(None))
            .collect();
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
        })
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
        let mut entry = self.lock_entry();
        let live = match entry.take() {
            Some(live) => live,
            None => {
                let mut store = self.engine.store(&self.limits);
                match W::instantiate(&self.pre, &mut store) {
                    Ok(instance) => Live { store, instance },
                    Err(error) => return Err(self.failed(function, &error)),
                }
            }
        };
        let Live {
            mut store,
            instance,
        } = live;
        store.set_epoch_deadline(self.limits.deadline_ticks);
        match call(&instance, &mut store) {
            Ok(result) => {
                *entry = Some(Live { store, instance });
                Ok(result)
            }
            Err(error) => Err(self.failed(function, &error)),
        }
    }

    /// Counts and logs a call whose answer was unusable though it returned.
    pub(super) fn reject(&self, function: &'static str, reason: &str) {
        let Trapped = self.failed(function, &format_args!("unusable answer: {reason}"));
    }

    fn failed(&self, function: &'static str, error: &dyn std::fmt::Display) -> Trapped {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            slot = W::SLOT.as_str(),
            sha256 = %self.sha256,
            function,
            error = %format_args!("{error:#}"),
            "policy call failed; using the built-in fallback"
        );
        Trapped
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
        }
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
}

impl<W: World> SlotCell<W> {
    pub(super) fn new(loaded: Loaded<W>) -> Self {
        SlotCell {
            current: ArcSwap::from_pointee(loaded),
            history: Mutex::new(Vec::new()),
        }
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
