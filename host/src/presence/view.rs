//! What one viewer may see of one subject: the relationship between them is
//! computed here from the caches, and the privacy policy decides.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Presence;
use super::directory::{Profile, intersects};
use crate::cluster::RemoteLive;
use crate::model::{Live, Status};
use crate::policy::{LastSeenView, Relationship, View, ViewRequest};
use crate::protocol::StatusObject;
use crate::store;

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
        let live = self.lives(&[subject.id]).await.remove(0);
        self.status_object_with(viewer, subject, live).await
    }

    /// The status objects `viewer` may see of each of `subjects`, with one
    /// read of the cluster's live presence for all of them.
    pub async fn status_objects(
        &self,
        viewer: &Profile,
        subjects: &[&Profile],
    ) -> store::Result<Vec<StatusObject>> {
        self.status_objects_told(viewer, subjects, false).await
    }

    /// `watching`: the viewer is a watcher being shown these statuses (in
    /// `ready`), so each is remembered as told here when nothing was told
    /// before: a replay of it is then not news.
    pub(super) async fn status_objects_told(
        &self,
        viewer: &Profile,
        subjects: &[&Profile],
        watching: bool,
    ) -> store::Result<Vec<StatusObject>> {
        let mut ids: Vec<Uuid> = subjects.iter().map(|s| s.id).collect();
        ids.push(viewer.id);
        self.directory.prefetch(&ids).await?;
        ids.pop();
        let lives = self.lives(&ids).await;
        if watching {
            for (id, l) in ids.iter().zip(&lives) {
                let status = l.live.map_or(Status::Offline, |l| l.status);
                self.announced.entry(*id).or_insert((0, status));
            }
        }
        let mut out = Vec::with_capacity(subjects.len());
        for (subject, live) in subjects.iter().zip(lives) {
            out.push(self.status_object_with(viewer, subject, live).await?);
        }
        Ok(out)
    }

    pub(super) async fn status_object_with(
        &self,
        viewer: &Profile,
        subject: &Profile,
        remote: RemoteLive,
    ) -> store::Result<StatusObject> {
        let relationship = self.relationship(viewer.id, subject.id).await?;
        let last_seen = last_seen_of(remote, subject);
        let view = self.view(relationship, viewer, subject, last_seen);
        Ok(status_object(subject.id, remote.live, last_seen, &view))
    }

    /// Live presence of `users`: the cluster's when Redis answers, else this
    /// node's own.
    pub async fn lives(&self, users: &[Uuid]) -> Vec<RemoteLive> {
        if let Some(c) = self.cluster.as_ref().filter(|c| c.is_up()) {
            match c.lives(users).await {
                Ok(lives) => return lives,
                Err(e) => {
                    tracing::warn!(error = %format_args!("{e:#}"), "reading live presence from Redis failed")
                }
            }
        }
        users
            .iter()
            .map(|u| RemoteLive {
                live: self.registry.live(u),
                seen: None,
            })
            .collect()
    }
}

/// When the subject was last seen: their last activity while away, the
/// latest known time while offline, none while online.
pub fn last_seen_of(remote: RemoteLive, subject: &Profile) -> Option<DateTime<Utc>> {
    match remote.live {
        Some(l) if l.status == Status::Online => None,
        Some(l) => Some(l.last_activity_at),
        None => subject.last_seen.max(remote.seen),
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
