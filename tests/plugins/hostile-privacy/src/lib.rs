//! A privacy policy for containment tests: `view` panics whenever the
//! VIEWER has chosen to show their own last seen to nobody, and otherwise
//! answers like the default policy (so it passes the host's conformance
//! vectors, whose viewers show their last seen to everyone).

use presence_plugin_sdk::privacy::{
    LastSeenView, PrivacyPolicy, ViewRequest, Visibility, default_last_seen,
};

/// Answers like the default policy (the SDK's defaults) unless the viewer
/// hides their own last seen from everyone.
pub struct Policy;

impl PrivacyPolicy for Policy {
    fn last_seen(request: &ViewRequest) -> LastSeenView {
        if matches!(request.viewer.last_seen_visibility, Visibility::Nobody) {
            panic!("hostile-privacy: the viewer shows their last seen to nobody");
        }
        default_last_seen(request)
    }
}

presence_plugin_sdk::export_privacy_policy!(Policy);

#[cfg(test)]
mod tests {
    use super::*;
    use presence_plugin_sdk::privacy::{Relationship, Settings};

    fn request(viewer: Visibility) -> ViewRequest {
        let open = Settings {
            show_last_seen: true,
            last_seen_visibility: Visibility::Everyone,
        };
        ViewRequest {
            relationship: Relationship::empty(),
            viewer: Settings {
                show_last_seen: true,
                last_seen_visibility: viewer,
            },
            subject: open,
            last_seen_age_secs: Some(60),
        }
    }

    #[test]
    fn an_open_viewer_gets_the_default_answer() {
        assert!(matches!(
            Policy::view(&request(Visibility::Everyone)).last_seen,
            LastSeenView::Exact
        ));
    }

    #[test]
    #[should_panic(expected = "nobody")]
    fn a_viewer_who_hides_from_everyone_makes_it_panic() {
        Policy::view(&request(Visibility::Nobody));
    }
}
