//! The policy runtime: the three WebAssembly policy slots (`typing`,
//! `status`, `privacy`, world `presence:policy@0.1.0` in `plugins/sdk/wit/`) and the
//! plain Rust API the rest of the host calls them through.
//!
//! # Layout
//! - [`engine`]: the one wasmtime engine, its epoch ticker (the CPU deadline)
//!   and per-store memory caps.
//! - [`bindings`]: the generated bindings, sealed; converts to our types.
//! - [`slot`]: a loaded component with its pool of reusable instances and
//!   its counters, behind an `ArcSwap`.
//! - [`fallback`]: what is answered when a plugin call fails.
//!
//! Every call here is infallible: a plugin that traps, overruns its deadline
//! or memory, or answers garbage is logged and counted, its instance is
//! discarded, and the caller gets the fallback (privacy fails closed).

mod bindings;
mod conformance;
mod decisions;
mod engine;
pub mod fallback;
mod slot;
mod wasi;
pub mod watch;

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use crate::model::PrivacySettings;
use bindings::{PrivacyWorld, StatusWorld, TypingWorld};
use engine::{Limits, PolicyEngine};
use slot::{Loaded, SlotCell, Trapped, World};

/// Shortest typing lease the host applies, whatever a plugin asks.
pub const MIN_TYPING_LEASE: Duration = Duration::from_millis(500);
/// Longest typing lease the host applies, whatever a plugin asks.
pub const MAX_TYPING_LEASE: Duration = Duration::from_secs(60);
/// Longest broadcast rate window; zero (no coalescing) is allowed.
pub const MAX_RATE_WINDOW: Duration = Duration::from_secs(10);
/// Bounds of [`StatusConfig::offline_grace`].
pub const OFFLINE_GRACE_BOUNDS: (Duration, Duration) = (Duration::ZERO, Duration::from_secs(600));
/// Bounds of [`StatusConfig::away_after`].
pub const AWAY_AFTER_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(86_400));
/// Bounds of [`StatusConfig::heartbeat_interval`].
pub const HEARTBEAT_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(300));
/// Bounds of [`StatusConfig::last_seen_flush`].
pub const LAST_SEEN_FLUSH_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3_600));
/// The plugin contract versions this server loads (see docs/plugins.md).
pub const ACCEPTED_WIT: &str = "presence:policy@0.1.0";
/// A component that fails this many calls in a row is rolled back to the
/// one it replaced (the built-in fallback answers meanwhile).
pub const AUTO_ROLLBACK_AFTER: u32 = 5;
/// A component with this many failures among its latest calls (failed,
/// out of) is rolled back too: one that fails only for some inputs (one
/// locale) never fails 5 in a row while other calls succeed in between.
pub const AUTO_ROLLBACK_RATE: (u32, u32) = (20, 100);
/// Largest component accepted. The defaults are under 100 KiB; this only
/// keeps a mistaken upload from being compiled.
pub const MAX_COMPONENT_BYTES: usize = 16 * 1024 * 1024;
/// A typing summary longer than this is garbage, not a summary.
pub const MAX_SUMMARY_BYTES: usize = 1_024;
/// An approximate last-seen label must be non-empty and at most this long.
pub const MAX_LABEL_BYTES: usize = 64;

/// [`SlotInfo::source`] of a component compiled into the binary.
pub const BUILTIN_SOURCE: &str = "builtin";

/// Default CPU time one plugin call may use.
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_millis(10);
/// Default size each linear memory of a plugin instance may grow to.
pub const DEFAULT_MEMORY_LIMIT: usize = 16 * 1024 * 1024;

const DEFAULT_TYPING: &[u8] = include_bytes!(env!("PRESENCE_DEFAULT_TYPING_WASM"));
const DEFAULT_STATUS: &[u8] = include_bytes!(env!("PRESENCE_DEFAULT_STATUS_WASM"));
const DEFAULT_PRIVACY: &[u8] = include_bytes!(env!("PRESENCE_DEFAULT_PRIVACY_WASM"));

/// A policy slot; its name is the same in every API, CLI and file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Typing,
    Status,
    Privacy,
}

impl Slot {
    pub const ALL: [Slot; 3] = [Slot::Typing, Slot::Status, Slot::Privacy];

    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Typing => "typing",
            Slot::Status => "status",
            Slot::Privacy => "privacy",
        }
    }

    /// The file that overrides this slot in a plugin directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Slot::Typing => "typing.wasm",
            Slot::Status => "status.wasm",
            Slot::Privacy => "privacy.wasm",
        }
    }

    /// The default component of this slot, as compiled into the binary.
    pub fn builtin_component(self) -> &'static [u8] {
        match self {
            Slot::Typing => DEFAULT_TYPING,
            Slot::Status => DEFAULT_STATUS,
            Slot::Privacy => DEFAULT_PRIVACY,
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Slot {
    type Err = UnknownSlot;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Slot::ALL
            .into_iter()
            .find(|slot| slot.as_str() == s)
            .ok_or(UnknownSlot)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy slot (expected typing, status or privacy)")]
pub struct UnknownSlot;

/// Limits applied to every typing state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypingLimits {
    /// How long a typing state lasts without renewal.
    pub lease: Duration,
    /// At most one broadcast per user and conversation in this window.
    pub rate_window: Duration,
}

/// A `typing_start` the host is about to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypingStart {
    /// Members of the conversation, the typer included.
    pub member_count: u32,
    /// Members other than this one typing there now.
    pub other_typers: u32,
    /// The user was already typing: this only renews the lease.
    pub renewal: bool,
}

/// What to do with a `typing_start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypingDecision {
    /// Announce the start to the other members (never for a renewal).
    pub broadcast: bool,
    /// Clamped to [`MIN_TYPING_LEASE`]..=[`MAX_TYPING_LEASE`].
    pub lease: Duration,
}

/// Who receives a user's status besides the users who have them as a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatcherScope {
    Contacts,
    ContactsAndCoMembers,
}

/// Status timings, each clamped to its documented bounds (`*_BOUNDS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusConfig {
    /// Wait this long after the last connection closes before offline.
    pub offline_grace: Duration,
    /// No activity for this long makes a connected user away.
    pub away_after: Duration,
    /// Ping interval; a connection silent for 2.5 intervals is dropped.
    pub heartbeat_interval: Duration,
    /// How often `last_seen` of connected users is written behind.
    pub last_seen_flush: Duration,
    pub watchers: WatcherScope,
}

/// How a viewer relates to a subject.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Relationship {
    /// The viewer is the subject.
    pub self_view: bool,
    /// The viewer is in the subject's contact list.
    pub in_subject_contacts: bool,
    /// The subject is in the viewer's contact list.
    pub in_viewer_contacts: bool,
    /// They share at least one conversation.
    pub shared_conversation: bool,
}

/// One (viewer, subject) pair to decide visibility for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewRequest {
    pub relationship: Relationship,
    pub viewer: PrivacySettings,
    pub subject: PrivacySettings,
    /// Seconds since the subject was last seen, if known and offline or away.
    pub last_seen_age_secs: Option<u64>,
}

/// How the subject's last seen appears to the viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LastSeenView {
    Hidden,
    Exact,
    /// A label shown in place of the time, such as "recently".
    Approximate(String),
}

/// What a viewer sees of a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// When false the subject looks offline with no last seen.
    pub show_status: bool,
    pub last_seen: LastSeenView,
}

/// How policies are loaded and run.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// `typing.wasm`, `status.wasm`, `privacy.wasm` found here replace the
    /// built-in defaults.
    pub plugin_dir: Option<PathBuf>,
    /// CPU time one call may take before it traps (1 ms resolution).
    pub call_deadline: Duration,
    /// Bytes each linear memory of an instance may grow to.
    pub memory_limit: usize,
    /// Where compiled components are cached across restarts; `None` compiles
    /// every load.
    pub cache_dir: Option<PathBuf>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            plugin_dir: None,
            call_deadline: DEFAULT_CALL_DEADLINE,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            cache_dir: None,
        }
    }
}

/// What operators see of a slot.
#[derive(Clone, Debug)]
pub struct SlotInfo {
    pub slot: Slot,
    /// The WIT world the component implements, e.g.
    /// `presence:policy/typing-policy@0.1.0`.
    pub world: &'static str,
    /// [`BUILTIN_SOURCE`] or the file the component was loaded from.
    pub source: String,
    /// Hex SHA-256 of the component bytes.
    pub sha256: String,
    pub loaded_at: DateTime<Utc>,
    /// Calls since this component was loaded.
    pub calls: u64,
    /// Calls that trapped, overran or answered garbage (and got the fallback).
    pub failures: u64,
    /// Call latency percentiles since loading (bucket upper bounds, within 25%).
    pub latency_p50: Option<Duration>,
    pub latency_p99: Option<Duration>,
    /// Largest linear memory an instance of this component grew to.
    pub peak_memory: usize,
    /// The latest failed call, if any.
    pub last_failure: Option<Failure>,
    /// Components this slot rolled back automatically, most recent last
    /// (empty where the info is of one component).
    pub rolled_back: Vec<RolledBack>,
}

/// A component rolled back because it kept failing.
#[derive(Clone, Debug)]
pub struct RolledBack {
    pub at: DateTime<Utc>,
    /// Which rule: `5 failed calls in a row of format-typers`, `20 of its
    /// last 100 calls failed`.
    pub reason: String,
    /// Its calls, failures and last failure when it was rolled back.
    pub component: Box<SlotInfo>,
}

/// A failed plugin call, as operators see it.
#[derive(Clone, Debug)]
pub struct Failure {
    pub at: DateTime<Utc>,
    /// The export called, e.g. `format-typers`.
    pub function: &'static str,
    /// Why, in one line: a panic's message, the import called, the limit hit.
    pub message: String,
}

/// What [`Policies::check`] found out about a component.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// Conformance vectors passed.
    pub vectors: usize,
    /// The candidate's calls while validating, with their latency and memory.
    pub info: SlotInfo,
    /// What it decided for representative inputs, one line each.
    pub decisions: Vec<String>,
}

/// The three policy slots; `Send + Sync`, shared as `Arc<Policies>`.
pub struct Policies {
    typing: SlotCell<TypingWorld>,
    status: SlotCell<StatusWorld>,
    privacy: SlotCell<PrivacyWorld>,
    /// Compiles replacements with the same engine and budget.
    engine: Arc<PolicyEngine>,
    limits: Limits,
    summaries: Mutex<Summaries>,
    locales: Mutex<Locales>,
    /// Automatic rollbacks, for whoever makes the rest of a cluster follow.
    rolled_back: tokio::sync::mpsc::UnboundedSender<Rollback>,
    rollbacks: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Rollback>>>,
}

/// A slot the policies rolled back by themselves, and what it serves now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    pub slot: Slot,
    pub sha256: String,
}

/// Typing summaries already worded by the serving typing component. A
/// policy is a pure function of its inputs, so the same typers in the same
/// locale get the same words without another call.
#[derive(Default)]
struct Summaries {
    /// The component that worded them; another one starts afresh.
    sha256: String,
    by_hash: HashMap<u64, Vec<Worded>>,
    len: usize,
}

struct Worded {
    locale: Box<str>,
    names: Vec<Box<str>>,
    summary: String,
}

/// Summaries kept before the cache starts over.
const SUMMARY_CACHE: usize = 4096;

impl Summaries {
    fn key(names: &[&str], locale: &str) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        locale.hash(&mut h);
        names.hash(&mut h);
        h.finish()
    }

    fn get(&self, sha256: &str, hash: u64, names: &[&str], locale: &str) -> Option<String> {
        if self.sha256 != sha256 {
            return None;
        }
        self.by_hash.get(&hash)?.iter().find_map(|w| {
            (*w.locale == *locale && w.names.iter().map(|n| &**n).eq(names.iter().copied()))
                .then(|| w.summary.clone())
        })
    }

    fn put(&mut self, sha256: &str, hash: u64, names: &[&str], locale: &str, summary: &str) {
        if self.sha256 != sha256 || self.len >= SUMMARY_CACHE {
            self.by_hash.clear();
            self.len = 0;
            sha256.clone_into(&mut self.sha256);
        }
        self.by_hash.entry(hash).or_default().push(Worded {
            locale: locale.into(),
            names: names.iter().map(|n| Box::from(*n)).collect(),
            summary: summary.to_owned(),
        });
        self.len += 1;
    }
}

/// The locale of clients that ask for none, or for one the typing policy
/// does not word.
pub const DEFAULT_LOCALE: &str = "en";

/// Locales already settled for the serving typing component: a requested
/// tag and the least specific tag worded the same way.
#[derive(Default)]
struct Locales {
    /// The component that settled them; another one starts afresh.
    sha256: String,
    by_tag: HashMap<Box<str>, Arc<str>>,
}

/// Distinct tags remembered; beyond it, new tags are settled each time.
const LOCALE_CACHE: usize = 1024;
/// Names that bring out a wording's singular, dual and plural forms alike.
const LOCALE_PROBE: [&str; 3] = ["Ann", "Bob", "Cy"];

/// `?locale=` in canonical BCP 47 case, reduced to language, script and
/// region (`zh-hant-tw` → `zh-Hant-TW`, `th_TH` → `th-TH`); `None` when it
/// does not start with a 2–3 letter language.
pub fn canonical_locale(requested: &str) -> Option<String> {
    let mut subtags = requested.split(['-', '_']);
    let language = subtags.next()?;
    if !(2..=3).contains(&language.len()) || !language.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let mut tag = language.to_ascii_lowercase();
    let mut script_allowed = true;
    for sub in subtags {
        let alpha = sub.bytes().all(|b| b.is_ascii_alphabetic());
        match sub.len() {
            4 if alpha && script_allowed => {
                tag.push('-');
                tag.push_str(&sub[..1].to_ascii_uppercase());
                tag.push_str(&sub[1..].to_ascii_lowercase());
                script_allowed = false;
            }
            2 if alpha => {
                tag.push('-');
                tag.push_str(&sub.to_ascii_uppercase());
                break;
            }
            3 if sub.bytes().all(|b| b.is_ascii_digit()) => {
                tag.push('-');
                tag.push_str(sub);
                break;
            }
            _ => break,
        }
    }
    Some(tag)
}

/// Why a component was refused; the slot keeps serving its current one.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Rejected(anyhow::Error);

/// [`SlotInfo::source`] of a component uploaded through the admin API.
pub const UPLOAD_SOURCE: &str = "upload";

const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Policies>();
};

impl Policies {
    /// Loads the built-in defaults, each replaced by `<plugin_dir>/<slot>.wasm`
    /// when that file exists. A file that fails to load is an error naming
    /// the file and why.
    pub fn load(config: &PolicyConfig) -> anyhow::Result<Policies> {
        let engine = PolicyEngine::shared(config.cache_dir.as_deref())?;
        let limits = Limits::new(config.memory_limit, config.call_deadline);
        let (rolled_back, rollbacks) = tokio::sync::mpsc::unbounded_channel();
        let policies = Policies {
            typing: SlotCell::new(builtin(&engine, limits)?),
            status: SlotCell::new(builtin(&engine, limits)?),
            privacy: SlotCell::new(builtin(&engine, limits)?),
            engine,
            limits,
            summaries: Mutex::default(),
            locales: Mutex::default(),
            rolled_back,
            rollbacks: Mutex::new(Some(rollbacks)),
        };
        // Files go through the same validation as an upload, and the
        // built-in stays behind them for rollback.
        for slot in Slot::ALL {
            let Some(path) = config.plugin_dir.as_ref().map(|d| d.join(slot.file_name())) else {
                break;
            };
            match std::fs::read(&path) {
                Ok(bytes) => {
                    policies
                        .install(slot, &bytes, path.display().to_string())
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "cannot load {} into the {slot} slot: {e}",
                                path.display()
                            )
                        })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
        }
        Ok(policies)
    }

    /// Validates `bytes` for `slot` (size, world, instantiation under the
    /// limits, the slot's conformance vectors) and swaps it in atomically:
    /// calls in flight finish on the old component, new calls use the new
    /// one. A refused component changes nothing. Compiling takes a while:
    /// call from a blocking context.
    pub fn install(&self, slot: Slot, bytes: &[u8], source: String) -> Result<SlotInfo, Rejected> {
        let load = || -> anyhow::Result<SlotInfo> {
            Ok(match slot {
                Slot::Typing => {
                    let l = Loaded::load(&self.engine, self.limits.validating(), bytes, source)?;
                    conformance::typing(&l)?;
                    self.typing.replace(l.serving(self.limits))
                }
                Slot::Status => {
                    let l = Loaded::load(&self.engine, self.limits.validating(), bytes, source)?;
                    conformance::status(&l)?;
                    self.status.replace(l.serving(self.limits))
                }
                Slot::Privacy => {
                    let l = Loaded::load(&self.engine, self.limits.validating(), bytes, source)?;
                    conformance::privacy(&l)?;
                    self.privacy.replace(l.serving(self.limits))
                }
            })
        };
        load().map_err(|e| {
            tracing::warn!(%slot, error = %format_args!("{e:#}"), "plugin refused");
            Rejected(e)
        })
    }

    /// Returns `slot` to the component it served before the last install;
    /// `None` when there is nothing to go back to.
    pub fn rollback(&self, slot: Slot) -> Option<SlotInfo> {
        match slot {
            Slot::Typing => self.typing.rollback(),
            Slot::Status => self.status.rollback(),
            Slot::Privacy => self.privacy.rollback(),
        }
    }

    /// Serves again a component this slot served before (by hash), if it
    /// is still kept for rollback.
    pub fn restore(&self, slot: Slot, sha256: &str) -> Option<SlotInfo> {
        match slot {
            Slot::Typing => self.typing.restore(sha256),
            Slot::Status => self.status.restore(sha256),
            Slot::Privacy => self.privacy.restore(sha256),
        }
    }

    /// Validates `bytes` for `slot` exactly as [`install`](Self::install)
    /// would, without installing, and reports what the validation measured.
    pub fn check(&self, slot: Slot, bytes: &[u8]) -> Result<CheckReport, Rejected> {
        fn run<W: World>(
            p: &Policies,
            bytes: &[u8],
            vectors: impl Fn(&Loaded<W>) -> anyhow::Result<usize>,
            decisions: impl Fn(&Loaded<W>) -> Vec<String>,
        ) -> anyhow::Result<CheckReport> {
            let loaded =
                Loaded::<W>::load(&p.engine, p.limits.validating(), bytes, "check".to_owned())?;
            let vectors = vectors(&loaded)?;
            // Measured before the decisions add their calls.
            let info = loaded.info();
            Ok(CheckReport {
                vectors,
                info,
                decisions: decisions(&loaded),
            })
        }
        match slot {
            Slot::Typing => run::<TypingWorld>(self, bytes, conformance::typing, decisions::typing),
            Slot::Status => run::<StatusWorld>(self, bytes, conformance::status, decisions::status),
            Slot::Privacy => {
                run::<PrivacyWorld>(self, bytes, conformance::privacy, decisions::privacy)
            }
        }
        .map_err(Rejected)
    }

    /// (hits, misses) of the compile cache since the engine started, when
    /// `cache_dir` was set.
    pub fn compile_cache_stats(&self) -> Option<(usize, usize)> {
        self.engine.cache_stats()
    }

    pub fn slot(&self, slot: Slot) -> SlotInfo {
        match slot {
            Slot::Typing => self.typing.current().info(),
            Slot::Status => self.status.current().info(),
            Slot::Privacy => self.privacy.current().info(),
        }
    }

    /// Asked once when the component was loaded.
    pub fn typing_limits(&self) -> TypingLimits {
        let TypingLimits { lease, rate_window } = self.typing.current().cached();
        TypingLimits {
            lease: lease.clamp(MIN_TYPING_LEASE, MAX_TYPING_LEASE),
            rate_window: rate_window.min(MAX_RATE_WINDOW),
        }
    }

    pub fn on_typing_start(&self, event: TypingStart) -> TypingDecision {
        let typing = self.typing.current();
        typing_start(&typing, event)
            .map(|d| TypingDecision {
                broadcast: d.broadcast,
                lease: d.lease.clamp(MIN_TYPING_LEASE, MAX_TYPING_LEASE),
            })
            .unwrap_or_else(|_| {
                self.rolled_back(Slot::Typing, self.typing.after_failure(&typing));
                fallback::typing_decision()
            })
    }

    /// The summary shown to one recipient; `names` in the order they started
    /// typing, the recipient excluded. `locale` is a BCP 47 tag.
    pub fn format_typers(&self, names: &[&str], locale: &str) -> String {
        self.try_format_typers(names, locale)
            .unwrap_or_else(|_| fallback::format_typers(names, locale))
    }

    fn try_format_typers(&self, names: &[&str], locale: &str) -> Result<String, Trapped> {
        let typing = self.typing.current();
        let hash = Summaries::key(names, locale);
        if let Some(s) = self
            .summaries
            .lock()
            .get(&typing.sha256, hash, names, locale)
        {
            // A success for the failure streak, as the call it stands for was.
            typing.accept("format-typers");
            return Ok(s);
        }
        match format_typers(&typing, names, locale) {
            Ok(summary) => {
                self.summaries
                    .lock()
                    .put(&typing.sha256, hash, names, locale, &summary);
                Ok(summary)
            }
            Err(trapped) => {
                self.rolled_back(Slot::Typing, self.typing.after_failure(&typing));
                Err(trapped)
            }
        }
    }

    /// The locale a client's typing texts are worded in: the least specific
    /// form of `requested` that the typing policy words as it words
    /// `requested`, or [`DEFAULT_LOCALE`] when it words it as English. So one
    /// user's many connections with made-up locales cost one wording, not one
    /// each. A tag the policy fails to word is kept, so that the failure is
    /// met (and counted) where its wording is needed.
    pub fn locale(&self, requested: Option<&str>) -> Arc<str> {
        let Some(tag) = requested.and_then(canonical_locale) else {
            return Arc::from(DEFAULT_LOCALE);
        };
        let sha256 = self.typing.current().sha256.clone();
        {
            let locales = self.locales.lock();
            if locales.sha256 == sha256
                && let Some(settled) = locales.by_tag.get(tag.as_str())
            {
                return settled.clone();
            }
        }
        let probe = |locale: &str| self.try_format_typers(&LOCALE_PROBE, locale);
        let settled: Arc<str> = match (probe(&tag), probe(DEFAULT_LOCALE)) {
            (Ok(worded), Ok(english)) if worded == english => Arc::from(DEFAULT_LOCALE),
            (Ok(worded), _) => {
                // From the language alone to the whole tag: the first worded alike.
                let mut cuts = tag.match_indices('-').map(|(i, _)| i).chain([tag.len()]);
                let end = cuts
                    .find(|&end| probe(&tag[..end]).is_ok_and(|w| w == worded))
                    .unwrap_or(tag.len());
                Arc::from(&tag[..end])
            }
            (Err(_), _) => Arc::from(tag.as_str()),
        };
        let mut locales = self.locales.lock();
        if locales.sha256 != sha256 {
            locales.by_tag.clear();
            locales.sha256 = sha256;
        }
        if locales.by_tag.len() < LOCALE_CACHE {
            locales.by_tag.insert(tag.into(), settled.clone());
        }
        settled
    }

    /// Asked once when the component was loaded.
    pub fn status_config(&self) -> StatusConfig {
        let config = self.status.current().cached();
        let clamp = |value: Duration, (min, max): (Duration, Duration)| value.clamp(min, max);
        StatusConfig {
            offline_grace: clamp(config.offline_grace, OFFLINE_GRACE_BOUNDS),
            away_after: clamp(config.away_after, AWAY_AFTER_BOUNDS),
            heartbeat_interval: clamp(config.heartbeat_interval, HEARTBEAT_BOUNDS),
            last_seen_flush: clamp(config.last_seen_flush, LAST_SEEN_FLUSH_BOUNDS),
            watchers: config.watchers,
        }
    }

    /// What `request.viewer` sees of the subject; on any failure, nothing
    /// (unless it is their own).
    pub fn privacy_view(&self, request: &ViewRequest) -> View {
        let privacy = self.privacy.current();
        privacy_view(&privacy, request).unwrap_or_else(|_| {
            self.rolled_back(Slot::Privacy, self.privacy.after_failure(&privacy));
            fallback::privacy_view(request)
        })
    }

    /// The automatic rollbacks from now on; the first caller gets them.
    pub fn take_rollbacks(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<Rollback>> {
        self.rollbacks.lock().take()
    }

    fn rolled_back(&self, slot: Slot, restored: Option<String>) {
        if let Some(sha256) = restored {
            let _ = self.rolled_back.send(Rollback { slot, sha256 });
        }
    }

    /// What serves `slot`, if it is the component with this hash.
    pub fn serving(&self, slot: Slot, sha256: &str) -> Option<SlotInfo> {
        let info = match slot {
            Slot::Typing => self.typing.info(),
            Slot::Status => self.status.info(),
            Slot::Privacy => self.privacy.info(),
        };
        (info.sha256 == sha256).then_some(info)
    }

    pub fn slots(&self) -> Vec<SlotInfo> {
        vec![self.typing.info(), self.status.info(), self.privacy.info()]
    }
}

impl fmt::Debug for Policies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policies")
            .field("slots", &self.slots())
            .finish()
    }
}

fn typing_start(
    typing: &Loaded<TypingWorld>,
    event: TypingStart,
) -> Result<TypingDecision, Trapped> {
    const FUNCTION: &str = "on-typing-start";
    let decision = typing.call(FUNCTION, |instance, store| {
        TypingWorld::on_typing_start(instance, store, event)
    })?;
    typing.accept(FUNCTION);
    Ok(decision)
}

/// A summary, refused (and counted) when it is too long to be one.
fn format_typers(
    typing: &Loaded<TypingWorld>,
    names: &[&str],
    locale: &str,
) -> Result<String, Trapped> {
    const FUNCTION: &str = "format-typers";
    let summary = typing.call(FUNCTION, |instance, store| {
        TypingWorld::format_typers(instance, store, names, locale)
    })?;
    if summary.len() > MAX_SUMMARY_BYTES {
        return Err(typing.reject(FUNCTION, &format!("a {}-byte summary", summary.len())));
    }
    typing.accept(FUNCTION);
    Ok(summary)
}

/// A view, refused (and counted) when its approximate label is empty or too long.
fn privacy_view(privacy: &Loaded<PrivacyWorld>, request: &ViewRequest) -> Result<View, Trapped> {
    const FUNCTION: &str = "view";
    let view = privacy.call(FUNCTION, |instance, store| {
        PrivacyWorld::view(instance, store, request)
    })?;
    if let LastSeenView::Approximate(label) = &view.last_seen
        && (label.is_empty() || label.len() > MAX_LABEL_BYTES)
    {
        return Err(privacy.reject(
            FUNCTION,
            &format!("a {}-byte approximate label", label.len()),
        ));
    }
    privacy.accept(FUNCTION);
    Ok(view)
}

/// The built-in component of `W`'s slot.
fn builtin<W: World>(engine: &Arc<PolicyEngine>, limits: Limits) -> anyhow::Result<Loaded<W>> {
    let slot = W::SLOT;
    Loaded::load(
        engine,
        limits.validating(),
        slot.builtin_component(),
        BUILTIN_SOURCE.to_owned(),
    )
    .map(|l| l.serving(limits))
    .with_context(|| format!("the built-in {slot} policy does not load"))
}
