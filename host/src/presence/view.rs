//! What one viewer may see of one subject: the relationship between them is
//! computed here from the caches, and the privacy policy decides.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Presence;
use super::directory::{Profile, intersects};
use super::registry::Live;
use crate::model::Status;
use crate::policy::{LastSeenView, Relationship, View, ViewRequest};
use crate::store;
use crate::ws::protocol::StatusObject;

impl Presence {
    pub async fn relationship(&self, viewer: Uuid, subject: Uuid) -> store::Result<Relationship> {
        if viewer == subject {
            return Ok(Relationship {
                self_view: true,
                in_subject_contacts: false,
                in_viewer_contacts: false,
                shared_conversation: false,
            });
        }
        let d = &self.directory;
        let subject_contacts = d.contacts_of(subject).await?;
        let viewer_contacts = d.contacts_of(viewer).await?;
        let a = d.conversations_of(viewer).await?;
        let b = d.conversations_of(subject).await?;
        Ok(Relationship {
            self_view: false,
            in_subject_contacts: subject_contacts.binary_search(&viewer).is_ok(),
            in_viewer_contacts: viewer_contacts.binary_search(&subject).is_ok(),
            shared_conversation: intersects(&a, &b),
        })
    }

    /// Asks the privacy policy about a subject's status and last seen.
    pub fn view(
        &self,
        relationship: Relationship,
        viewer: &Profile,
        subject: &Profile,
        last_seen: Option<DateTime<Utc>>,
    ) -> View {
        let age = last_seen.map(|t| (Utc::now() - t).num_seconds().max(0) as u64);
        self.policies.privacy_view(&ViewRequest {
            relationship,
            viewer: viewer.privacy,
            subject: subject.privacy,
            last_seen_age_secs: age,
        })
    }

    /// The status object (SPEC §5) `viewer` may see of `subject`.
    pub async fn status_object(
        &self,
        viewer: &Profile,
        subject: &Profile,
    ) -> store::Result<StatusObject> {
        let relationship = self.relationship(viewer.id, subject.id).await?;
        let live = self.registry.live(&subject.id);
        let last_seen = last_seen_of(live, subject);
        let view = self.view(relationship, viewer, subject, last_seen);
        Ok(status_object(subject.id, live, last_seen, &view))
    }
}

/// When the subject was last seen: their last activity while away, the
/// stored time while offline, none while online.
pub fn last_seen_of(live: Option<Live>, subject: &Profile) -> Option<DateTime<Utc>> {
    match live.map(|l| l.status) {
        Some(Status::Online) => None,
        Some(Status::Away) => live.map(|l| l.last_activity_at),
        _ => subject.last_seen,
    }
}

pub fn status_object(
    subject: Uuid,
    live: Option<Live>,
    last_seen: Option<DateTime<Utc>>,
    view: &View,
) -> StatusObject {
    let status = match live {
        Some(l) if view.show_status => l.status,
        _ => Status::Offline,
    };
    let visible = view.show_status && !matches!(view.last_seen, LastSeenView::Hidden);
    let (last_seen, approx) = match (&view.last_seen, status) {
        (_, Status::Online) => (None, None),
        _ if !view.show_status => (None, None),
        (LastSeenView::Exact, _) => (last_seen, None),
        (LastSeenView::Approximate(label), _) => (None, Some(label.clone())),
        (LastSeenView::Hidden, _) => (None, None),
    };
    StatusObject {
        user_id: subject,
        status,
        is_online: status == Status::Online,
        last_seen,
        show_last_seen: visible,
        last_seen_approx: approx,
    }
}
