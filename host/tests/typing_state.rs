//! Typing state stays bounded: after a million start/stop cycles nothing is
//! left behind once the leases and rate windows have passed.

use std::sync::Arc;
use std::time::Duration;

use presence::config::Limits;
use presence::model::Ids;
use presence::policy::{Policies, PolicyConfig};
use presence::presence::Presence;
use presence::presence::directory::Profile;
use presence::store::Store;
use uuid::Uuid;

/// Start/stop cycles driven through the typing state.
const CYCLES: usize = 1_000_000;
/// Distinct conversations they rotate through.
const CONVERSATIONS: usize = 1_000;

#[tokio::test]
async fn a_million_start_stop_cycles_leave_nothing_behind() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let policies = Arc::new(Policies::load(&PolicyConfig::default()).unwrap());
    let (p, tasks) = Presence::start(store, policies, Limits::default(), None, None);
    // From here on the clock is virtual; the database is never needed again.
    tokio::time::pause();

    let user = Uuid::new_v4();
    let profile = Arc::new(Profile {
        id: user,
        username: Some("ann".into()),
        display_name: Some("Ann".into()),
        privacy: Default::default(),
        last_seen: None,
    });
    let mut members: Vec<Uuid> = vec![user, Uuid::new_v4()];
    members.sort();
    let members: Ids = members.into();
    let conversations: Vec<Uuid> = (0..CONVERSATIONS).map(|_| Uuid::new_v4()).collect();

    for i in 0..CYCLES {
        let c = conversations[i % CONVERSATIONS];
        p.typing
            .start(&p, c, profile.clone(), members.clone(), None);
        p.typing.stop(&p, c, user);
        if i % CONVERSATIONS == 0 {
            // Let the timer task apply what was queued.
            tokio::task::yield_now().await;
            assert!(
                p.typing.entries() <= CONVERSATIONS,
                "bounded by live conversations"
            );
        }
    }
    // Past every lease and rate window (virtual time).
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(p.typing.entries(), 0, "no typer entry survives");
    assert_eq!(p.timers.armed(), 0, "no timer survives");
    tasks.shutdown(&p).await;
}
