//! The generated bindings of `plugins/sdk/wit/policy.wit`, sealed in here: one `bindgen!`
//! per world, and the conversions between the generated types and ours.
//!
//! Conversions are lossless; judging what a guest declared (clamping a lease,
//! rejecting a label) is the caller's job in [`super`], as is choosing the
//! fallback when a call traps.

use std::time::Duration;

use wasmtime::component::InstancePre;
use wasmtime::{Result, Store};

use super::engine::StoreState;
use super::slot::World;
use super::{
    LastSeenView, Relationship, Slot, StatusConfig, TypingDecision, TypingLimits, TypingStart,
    View, ViewRequest, WatcherScope,
};
use crate::model::{PrivacySettings, Visibility};

mod typing {
    wasmtime::component::bindgen!({
        path: "../plugins/sdk/wit",
        world: "typing-policy",
        // `format-typers` then takes `&[&str]`: no `String` per name per call.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

mod status {
    wasmtime::component::bindgen!({ path: "../plugins/sdk/wit", world: "status-policy" });
}

mod privacy {
    wasmtime::component::bindgen!({ path: "../plugins/sdk/wit", world: "privacy-policy" });
}

/// The slot whose world `pre` implements, if any: to tell an operator who
/// chose the wrong slot which one the component is for.
pub(super) fn slot_of(pre: &InstancePre<StoreState>) -> Option<(Slot, &'static str)> {
    if TypingWorld::pre(pre.clone()).is_ok() {
        return Some((Slot::Typing, TypingWorld::NAME));
    }
    if StatusWorld::pre(pre.clone()).is_ok() {
        return Some((Slot::Status, StatusWorld::NAME));
    }
    if PrivacyWorld::pre(pre.clone()).is_ok() {
        return Some((Slot::Privacy, PrivacyWorld::NAME));
    }
    None
}

fn millis(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

/// The `typing-policy` world.
pub(super) enum TypingWorld {}

impl World for TypingWorld {
    const SLOT: Slot = Slot::Typing;
    const NAME: &'static str = "presence:policy/typing-policy@0.1.0";
    type Pre = typing::TypingPolicyPre<StoreState>;
    type Instance = typing::TypingPolicy;
    type Cached = TypingLimits;

    fn pre(pre: InstancePre<StoreState>) -> Result<Self::Pre> {
        typing::TypingPolicyPre::new(pre)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<StoreState>) -> Result<Self::Instance> {
        pre.instantiate(store)
    }

    fn cache(instance: &Self::Instance, store: &mut Store<StoreState>) -> Result<TypingLimits> {
        let limits = instance.presence_policy_typing().call_limits(store)?;
        Ok(TypingLimits {
            lease: millis(limits.lease_ms),
            rate_window: millis(limits.rate_window_ms),
        })
    }
}

impl TypingWorld {
    /// The guest's decision as declared; the lease is not clamped yet.
    pub(super) fn on_typing_start(
        instance: &typing::TypingPolicy,
        store: &mut Store<StoreState>,
        event: TypingStart,
    ) -> Result<TypingDecision> {
        use typing::exports::presence::policy::typing as wit;
        let event = wit::TypingStart {
            member_count: event.member_count,
            other_typers: event.other_typers,
            renewal: event.renewal,
        };
        let decision = instance
            .presence_policy_typing()
            .call_on_typing_start(store, event)?;
        Ok(TypingDecision {
            broadcast: decision.broadcast,
            lease: millis(decision.lease_ms),
        })
    }

    pub(super) fn format_typers(
        instance: &typing::TypingPolicy,
        store: &mut Store<StoreState>,
        names: &[&str],
        locale: &str,
    ) -> Result<String> {
        instance
            .presence_policy_typing()
            .call_format_typers(store, names, locale)
    }
}

/// The `status-policy` world.
pub(super) enum StatusWorld {}

impl World for StatusWorld {
    const SLOT: Slot = Slot::Status;
    const NAME: &'static str = "presence:policy/status-policy@0.1.0";
    type Pre = status::StatusPolicyPre<StoreState>;
    type Instance = status::StatusPolicy;
    type Cached = StatusConfig;

    fn pre(pre: InstancePre<StoreState>) -> Result<Self::Pre> {
        status::StatusPolicyPre::new(pre)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<StoreState>) -> Result<Self::Instance> {
        pre.instantiate(store)
    }

    fn cache(instance: &Self::Instance, store: &mut Store<StoreState>) -> Result<StatusConfig> {
        use status::exports::presence::policy::status::WatcherScope as Wit;
        let config = instance.presence_policy_status().call_config(store)?;
        Ok(StatusConfig {
            offline_grace: millis(config.offline_grace_ms),
            away_after: millis(config.away_after_ms),
            heartbeat_interval: millis(config.heartbeat_interval_ms),
            last_seen_flush: millis(config.last_seen_flush_ms),
            watchers: match config.watchers {
                Wit::Contacts => WatcherScope::Contacts,
                Wit::ContactsAndCoMembers => WatcherScope::ContactsAndCoMembers,
            },
        })
    }
}

/// The `privacy-policy` world.
pub(super) enum PrivacyWorld {}

impl World for PrivacyWorld {
    const SLOT: Slot = Slot::Privacy;
    const NAME: &'static str = "presence:policy/privacy-policy@0.1.0";
    type Pre = privacy::PrivacyPolicyPre<StoreState>;
    type Instance = privacy::PrivacyPolicy;
    type Cached = ();

    fn pre(pre: InstancePre<StoreState>) -> Result<Self::Pre> {
        privacy::PrivacyPolicyPre::new(pre)
    }

    fn instantiate(pre: &Self::Pre, store: &mut Store<StoreState>) -> Result<Self::Instance> {
        pre.instantiate(store)
    }

    fn cache(_: &Self::Instance, _: &mut Store<StoreState>) -> Result<()> {
        Ok(())
    }
}

impl PrivacyWorld {
    /// The guest's view as declared; labels are not judged yet.
    pub(super) fn view(
        instance: &privacy::PrivacyPolicy,
        store: &mut Store<StoreState>,
        request: &ViewRequest,
    ) -> Result<View> {
        use privacy::exports::presence::policy::privacy as wit;

        let settings = |s: PrivacySettings| wit::Settings {
            show_last_seen: s.show_last_seen,
            last_seen_visibility: match s.last_seen_visibility {
                Visibility::Everyone => wit::Visibility::Everyone,
                Visibility::Contacts => wit::Visibility::Contacts,
                Visibility::Nobody => wit::Visibility::Nobody,
            },
        };
        let Relationship {
            self_view,
            in_subject_contacts,
            in_viewer_contacts,
            shared_conversation,
        } = request.relationship;
        let mut relationship = wit::Relationship::empty();
        for (set, flag) in [
            (self_view, wit::Relationship::SELF_VIEW),
            (in_subject_contacts, wit::Relationship::IN_SUBJECT_CONTACTS),
            (in_viewer_contacts, wit::Relationship::IN_VIEWER_CONTACTS),
            (shared_conversation, wit::Relationship::SHARED_CONVERSATION),
        ] {
            if set {
                relationship |= flag;
            }
        }
        let request = wit::ViewRequest {
            relationship,
            viewer: settings(request.viewer),
            subject: settings(request.subject),
            last_seen_age_secs: request.last_seen_age_secs,
        };

        let view = instance
            .presence_policy_privacy()
            .call_view(store, request)?;
        Ok(View {
            show_status: view.show_status,
            last_seen: match view.last_seen {
                wit::LastSeenView::Hidden => LastSeenView::Hidden,
                wit::LastSeenView::Exact => LastSeenView::Exact,
                wit::LastSeenView::Approximate(label) => LastSeenView::Approximate(label),
            },
        })
    }
}
