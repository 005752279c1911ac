//! The storage layer's behaviour, run against both backends.
//!
//! Every shared test body is an `async fn(&Store, url)` (the url lets a body reconnect),
//! called once on a fresh SQLite file and once on PostgreSQL in a fresh schema. The
//! PostgreSQL half needs `PRESENCE_TEST_POSTGRES_URL` (for example
//! `postgres://postgres@127.0.0.1:5432/test`) and is skipped without it.

use std::future::Future;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures_util::FutureExt;
use presence::model::{PrivacySettings, Status, Visibility};
use presence::store::{Edge, Relations, Store, StoreError, UserRecord};
use uuid::Uuid;

type Body = for<'a> fn(&'a Store, &'a str) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

// ---------------------------------------------------------------- harness

async fn on_sqlite(body: Body) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("presence.db").display());
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    store.migrate().await.unwrap();
    body(&store, &url).await;
    store.close().await;
}

fn postgres_url() -> Option<String> {
    std::env::var("PRESENCE_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// `base` with `search_path` set to `schema` for every connection.
fn with_search_path(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// Runs `body` on a store whose connections live in a fresh schema, dropped afterwards
/// even when the body panics.
async fn on_postgres_schema(migrate: bool, body: Body) {
    let Some(base) = postgres_url() else {
        // Straight to the stderr handle: libtest captures println!.
        let _ = writeln!(
            std::io::stderr(),
            "skipped: PRESENCE_TEST_POSTGRES_URL is not set"
        );
        return;
    };
    let schema = format!("presence_test_{}", Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let url = with_search_path(&base, &schema);
    let outcome = AssertUnwindSafe(async {
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(store.backend(), "postgres");
        if migrate {
            store.migrate().await.unwrap();
        }
        body(&store, &url).await;
        store.close().await;
    })
    .catch_unwind()
    .await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn on_postgres(body: Body) {
    on_postgres_schema(true, body).await;
}

/// Declares each body as one `sqlite::<name>` and one `postgres::<name>` test.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_sqlite(|store, url| Box::pin(super::$name(store, url))).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_postgres(|store, url| Box::pin(super::$name(store, url))).await;
                }
            )*
        }
    };
}

on_both_backends!(
    ping_and_backend,
    profile_upsert_and_read,
    ensure_user_keeps_names,
    privacy_update,
    write_presence_batches_and_never_goes_back,
    last_seen_survives_reconnect,
    reset_statuses_marks_everyone_offline,
    members_replace_add_remove,
    contacts_and_watchers,
    users_batch_omits_unknown,
    batch_reads_match_one_at_a_time,
    concurrent_writers,
);

// ---------------------------------------------------------------- helpers

/// 2025-01-29T10:30:00.123Z plus `secs` seconds.
fn at(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 29, 10, 30, 0).unwrap()
        + Duration::milliseconds(123)
        + Duration::seconds(secs)
}

fn ids(n: usize) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = (0..n).map(|_| Uuid::new_v4()).collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<Uuid>) -> Vec<Uuid> {
    v.sort();
    v
}

fn default_privacy() -> PrivacySettings {
    PrivacySettings {
        show_last_seen: true,
        last_seen_visibility: Visibility::Everyone,
    }
}

// ---------------------------------------------------------------- shared bodies

async fn ping_and_backend(store: &Store, _url: &str) {
    store.ping().await.unwrap();
    // Migrating again is a no-op.
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
}

async fn profile_upsert_and_read(store: &Store, _url: &str) {
    let id = Uuid::new_v4();
    assert_eq!(store.user(id).await.unwrap(), None);

    let created = store.upsert_profile(id, "john", "John Doe").await.unwrap();
    assert_eq!(
        created,
        UserRecord {
            id,
            username: Some("john".into()),
            display_name: Some("John Doe".into()),
            status: Status::Offline,
            last_seen: None,
            privacy: default_privacy(),
        }
    );
    assert_eq!(store.user(id).await.unwrap(), Some(created.clone()));

    // An update changes the names and keeps everything else.
    store
        .write_presence(&[(id, Status::Away, at(0))])
        .await
        .unwrap();
    store
        .set_privacy(id, Some(false), Some(Visibility::Contacts))
        .await
        .unwrap();
    let updated = store
        .upsert_profile(id, "johnny", "Johnny D.")
        .await
        .unwrap();
    assert_eq!(updated.username.as_deref(), Some("johnny"));
    assert_eq!(updated.display_name.as_deref(), Some("Johnny D."));
    assert_eq!(updated.status, Status::Away);
    assert_eq!(updated.last_seen, Some(at(0)));
    assert_eq!(
        updated.privacy,
        PrivacySettings {
            show_last_seen: false,
            last_seen_visibility: Visibility::Contacts
        }
    );
    assert_eq!(store.user(id).await.unwrap(), Some(updated));
}

async fn ensure_user_keeps_names(store: &Store, _url: &str) {
    let a = Uuid::new_v4();
    let first = store
        .ensure_user(a, Some("john"), Some("John"))
        .await
        .unwrap();
    assert_eq!(first.username.as_deref(), Some("john"));
    assert_eq!(first.display_name.as_deref(), Some("John"));
    assert_eq!(first.status, Status::Offline);
    assert_eq!(first.privacy, default_privacy());

    // Existing names are not overwritten.
    let again = store
        .ensure_user(a, Some("other"), Some("Other"))
        .await
        .unwrap();
    assert_eq!(again, first);
    let admin_set = store.upsert_profile(a, "john2", "John Two").await.unwrap();
    assert_eq!(
        store
            .ensure_user(a, Some("token"), Some("Token"))
            .await
            .unwrap(),
        admin_set
    );

    // Missing names are filled, one at a time.
    let b = Uuid::new_v4();
    let bare = store.ensure_user(b, None, None).await.unwrap();
    assert_eq!((bare.username, bare.display_name), (None, None));
    let half = store.ensure_user(b, Some("sarah"), None).await.unwrap();
    assert_eq!(half.username.as_deref(), Some("sarah"));
    assert_eq!(half.display_name, None);
    let full = store
        .ensure_user(b, Some("ignored"), Some("Sarah"))
        .await
        .unwrap();
    assert_eq!(full.username.as_deref(), Some("sarah"));
    assert_eq!(full.display_name.as_deref(), Some("Sarah"));

    // A bare row made by a presence flush keeps its last_seen when names arrive.
    let c = Uuid::new_v4();
    store
        .write_presence(&[(c, Status::Offline, at(7))])
        .await
        .unwrap();
    let named = store
        .ensure_user(c, Some("mia"), Some("Mia"))
        .await
        .unwrap();
    assert_eq!(named.username.as_deref(), Some("mia"));
    assert_eq!(named.last_seen, Some(at(7)));
    assert_eq!(store.user(c).await.unwrap(), Some(named));
}

async fn privacy_update(store: &Store, _url: &str) {
    let unknown = Uuid::new_v4();
    assert_eq!(
        store
            .set_privacy(unknown, Some(false), Some(Visibility::Nobody))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.user(unknown).await.unwrap(), None);

    let id = Uuid::new_v4();
    store.upsert_profile(id, "john", "John").await.unwrap();

    let r = store
        .set_privacy(id, Some(false), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.privacy,
        PrivacySettings {
            show_last_seen: false,
            last_seen_visibility: Visibility::Everyone
        }
    );
    let r = store
        .set_privacy(id, None, Some(Visibility::Contacts))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.privacy,
        PrivacySettings {
            show_last_seen: false,
            last_seen_visibility: Visibility::Contacts
        }
    );
    let unchanged = store.set_privacy(id, None, None).await.unwrap().unwrap();
    assert_eq!(unchanged, r);
    let r = store
        .set_privacy(id, Some(true), Some(Visibility::Nobody))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.privacy,
        PrivacySettings {
            show_last_seen: true,
            last_seen_visibility: Visibility::Nobody
        }
    );
    assert_eq!(r.username.as_deref(), Some("john"));
    assert_eq!(store.user(id).await.unwrap(), Some(r));
}

async fn write_presence_batches_and_never_goes_back(store: &Store, _url: &str) {
    let a = Uuid::new_v4();
    let b = Uuid::new_v4();
    let unknown = Uuid::new_v4();
    store.upsert_profile(a, "a", "A").await.unwrap();
    store.upsert_profile(b, "b", "B").await.unwrap();

    store.write_presence(&[]).await.unwrap();
    store
        .write_presence(&[
            (a, Status::Online, at(0)),
            (b, Status::Away, at(1)),
            (unknown, Status::Offline, at(2)),
        ])
        .await
        .unwrap();
    let ra = store.user(a).await.unwrap().unwrap();
    assert_eq!((ra.status, ra.last_seen), (Status::Online, Some(at(0))));
    assert_eq!(ra.username.as_deref(), Some("a"));
    let rb = store.user(b).await.unwrap().unwrap();
    assert_eq!((rb.status, rb.last_seen), (Status::Away, Some(at(1))));
    // The unknown user got a bare row carrying its last_seen.
    let ru = store.user(unknown).await.unwrap().unwrap();
    assert_eq!(
        ru,
        UserRecord {
            id: unknown,
            username: None,
            display_name: None,
            status: Status::Offline,
            last_seen: Some(at(2)),
            privacy: default_privacy(),
        }
    );

    // An older time does not move last_seen back; the status still changes.
    store
        .write_presence(&[(a, Status::Offline, at(-60))])
        .await
        .unwrap();
    let ra = store.user(a).await.unwrap().unwrap();
    assert_eq!((ra.status, ra.last_seen), (Status::Offline, Some(at(0))));
    // A newer one does move it forward.
    store
        .write_presence(&[(a, Status::Online, at(1))])
        .await
        .unwrap();
    let ra = store.user(a).await.unwrap().unwrap();
    assert_eq!((ra.status, ra.last_seen), (Status::Online, Some(at(1))));

    // Duplicates in one batch: the last status, the greatest time.
    store
        .write_presence(&[(b, Status::Online, at(5)), (b, Status::Offline, at(3))])
        .await
        .unwrap();
    let rb = store.user(b).await.unwrap().unwrap();
    assert_eq!((rb.status, rb.last_seen), (Status::Offline, Some(at(5))));

    // Sub-second precision survives (milliseconds at least).
    let precise = at(10) + Duration::milliseconds(456);
    store
        .write_presence(&[(b, Status::Offline, precise)])
        .await
        .unwrap();
    assert_eq!(
        store.user(b).await.unwrap().unwrap().last_seen,
        Some(precise)
    );

    // A large batch (more rows than one SQLite statement takes) lands entirely.
    let many = ids(750);
    let entries: Vec<_> = many
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, Status::Online, at(i as i64)))
        .collect();
    store.write_presence(&entries).await.unwrap();
    let got = store.users(&many[..100]).await.unwrap();
    assert_eq!(got.len(), 100);
    for (i, id) in many.iter().enumerate().step_by(37) {
        let r = store.user(*id).await.unwrap().unwrap();
        assert_eq!(
            (r.status, r.last_seen),
            (Status::Online, Some(at(i as i64)))
        );
    }
}

async fn last_seen_survives_reconnect(store: &Store, url: &str) {
    let id = Uuid::new_v4();
    store.upsert_profile(id, "john", "John").await.unwrap();
    store
        .write_presence(&[(id, Status::Offline, at(42))])
        .await
        .unwrap();
    store.close().await;
    assert!(store.ping().await.is_err(), "a closed store refuses work");

    let again = Store::connect(url).await.unwrap();
    again.migrate().await.unwrap();
    let r = again.user(id).await.unwrap().unwrap();
    assert_eq!(r.last_seen, Some(at(42)));
    assert_eq!(r.status, Status::Offline);
    assert_eq!(r.username.as_deref(), Some("john"));
    again.close().await;
}

async fn reset_statuses_marks_everyone_offline(store: &Store, _url: &str) {
    assert_eq!(store.reset_statuses().await.unwrap(), 0);
    let [a, b, c, d] = [(); 4].map(|_| Uuid::new_v4());
    store.upsert_profile(d, "d", "D").await.unwrap();
    store
        .write_presence(&[
            (a, Status::Online, at(0)),
            (b, Status::Away, at(0)),
            (c, Status::Offline, at(0)),
        ])
        .await
        .unwrap();
    assert_eq!(store.reset_statuses().await.unwrap(), 2);
    for id in [a, b, c, d] {
        let r = store.user(id).await.unwrap().unwrap();
        assert_eq!(r.status, Status::Offline);
    }
    assert_eq!(store.user(a).await.unwrap().unwrap().last_seen, Some(at(0)));
    assert_eq!(store.reset_statuses().await.unwrap(), 0);
}

async fn members_replace_add_remove(store: &Store, _url: &str) {
    let conv = Uuid::new_v4();
    let conv2 = Uuid::new_v4();
    let u = ids(5);
    let (a, b, c, d, e) = (u[0], u[1], u[2], u[3], u[4]);

    assert_eq!(store.members(conv).await.unwrap(), Vec::<Uuid>::new());
    // Duplicates are stored once; users need no profile row.
    assert_eq!(
        store.replace_members(conv, &[c, a, b, a]).await.unwrap(),
        Vec::<Uuid>::new()
    );
    assert_eq!(store.members(conv).await.unwrap(), vec![a, b, c]);
    assert_eq!(store.users(&[a, b, c]).await.unwrap(), Vec::new());

    assert_eq!(
        store.replace_members(conv, &[d, b]).await.unwrap(),
        vec![a, b, c]
    );
    assert_eq!(store.members(conv).await.unwrap(), vec![b, d]);

    assert!(store.add_member(conv, e).await.unwrap());
    assert!(!store.add_member(conv, e).await.unwrap());
    assert!(store.remove_member(conv, b).await.unwrap());
    assert!(!store.remove_member(conv, b).await.unwrap());
    assert!(!store.remove_member(conv2, a).await.unwrap());
    assert_eq!(store.members(conv).await.unwrap(), vec![d, e]);

    assert!(store.add_member(conv2, d).await.unwrap());
    assert_eq!(
        store.conversations_of(d).await.unwrap(),
        sorted(vec![conv, conv2])
    );
    assert_eq!(store.conversations_of(e).await.unwrap(), vec![conv]);
    assert_eq!(store.conversations_of(a).await.unwrap(), Vec::<Uuid>::new());

    assert_eq!(store.replace_members(conv, &[]).await.unwrap(), vec![d, e]);
    assert_eq!(store.members(conv).await.unwrap(), Vec::<Uuid>::new());
    assert_eq!(store.conversations_of(d).await.unwrap(), vec![conv2]);
    assert_eq!(store.members(conv2).await.unwrap(), vec![d]);
}

async fn contacts_and_watchers(store: &Store, _url: &str) {
    let u = ids(5);
    let (a, b, c, d, e) = (u[0], u[1], u[2], u[3], u[4]);

    assert_eq!(store.contacts_of(a).await.unwrap(), Vec::<Uuid>::new());
    // Self dropped, duplicates once.
    assert_eq!(
        store.replace_contacts(a, &[c, b, a, b]).await.unwrap(),
        Vec::<Uuid>::new()
    );
    assert_eq!(store.contacts_of(a).await.unwrap(), vec![b, c]);
    assert_eq!(
        store.replace_contacts(d, &[b]).await.unwrap(),
        Vec::<Uuid>::new()
    );

    assert_eq!(store.watchers_of(b).await.unwrap(), vec![a, d]);
    assert_eq!(store.watchers_of(c).await.unwrap(), vec![a]);
    assert_eq!(store.watchers_of(a).await.unwrap(), Vec::<Uuid>::new());

    assert_eq!(
        store.replace_contacts(a, &[e, c]).await.unwrap(),
        vec![b, c]
    );
    assert_eq!(store.contacts_of(a).await.unwrap(), vec![c, e]);
    assert_eq!(store.watchers_of(b).await.unwrap(), vec![d]);
    assert_eq!(store.watchers_of(e).await.unwrap(), vec![a]);

    // Only itself: an empty list.
    assert_eq!(store.replace_contacts(a, &[a]).await.unwrap(), vec![c, e]);
    assert_eq!(store.contacts_of(a).await.unwrap(), Vec::<Uuid>::new());
    assert_eq!(store.watchers_of(a).await.unwrap(), Vec::<Uuid>::new());
    assert_eq!(store.watchers_of(c).await.unwrap(), Vec::<Uuid>::new());
    assert_eq!(store.contacts_of(d).await.unwrap(), vec![b]);
}

/// The batch reads answer exactly what the one-user reads answer.
async fn batch_reads_match_one_at_a_time(store: &Store, _url: &str) {
    let u = ids(4);
    let (a, b, c, nobody) = (u[0], u[1], u[2], u[3]);
    let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
    store.replace_contacts(a, &[b, c]).await.unwrap();
    store.replace_contacts(b, &[a]).await.unwrap();
    store.replace_members(x, &[a, b]).await.unwrap();
    store.replace_members(y, &[a]).await.unwrap();
    let users = [a, b, c, nobody, a];
    for (of, one) in [(Edge::CONTACTS, 0), (Edge::CONVERSATIONS, 1)] {
        let mut got = store.pairs(of, &users).await.unwrap();
        got.sort();
        let mut want = Vec::new();
        for user in [a, b, c, nobody] {
            let list = if one == 0 {
                store.contacts_of(user).await.unwrap()
            } else {
                store.conversations_of(user).await.unwrap()
            };
            want.extend(list.into_iter().map(|id| (user, id)));
        }
        want.sort();
        assert_eq!(got, want, "{of:?}");
    }
    assert!(store.pairs(Edge::CONTACTS, &[]).await.unwrap().is_empty());

    // A first connect's single query answers the three one-user reads.
    for user in [a, b, c, nobody] {
        let rows = store.relations(user).await.unwrap();
        let kind = |k| sorted(rows.iter().filter(|r| r.0 == k).map(|r| r.1).collect());
        assert_eq!(
            kind(Relations::CONTACTS),
            store.contacts_of(user).await.unwrap()
        );
        assert_eq!(
            kind(Relations::WATCHERS),
            store.watchers_of(user).await.unwrap()
        );
        assert_eq!(
            kind(Relations::CONVERSATIONS),
            store.conversations_of(user).await.unwrap()
        );
    }
}

async fn users_batch_omits_unknown(store: &Store, _url: &str) {
    let [a, b, unknown] = [(); 3].map(|_| Uuid::new_v4());
    let ra = store.upsert_profile(a, "a", "A").await.unwrap();
    let rb = store.upsert_profile(b, "b", "B").await.unwrap();

    assert_eq!(store.users(&[]).await.unwrap(), Vec::new());
    assert_eq!(store.users(&[unknown]).await.unwrap(), Vec::new());
    let mut got = store.users(&[b, unknown, a, b]).await.unwrap();
    got.sort_by_key(|r| r.id);
    let mut want = vec![ra, rb];
    want.sort_by_key(|r| r.id);
    assert_eq!(got, want);

    // 100 ids, the REST limit, in one call.
    let mut many = ids(99);
    for id in &many {
        store.ensure_user(*id, Some("x"), None).await.unwrap();
    }
    many.push(unknown);
    assert_eq!(store.users(&many).await.unwrap().len(), 99);
}

async fn concurrent_writers(store: &Store, _url: &str) {
    let conv = Uuid::new_v4();
    let people = ids(8);
    let mut tasks = Vec::new();
    for (n, me) in people.iter().copied().enumerate() {
        let store = store.clone();
        let people = people.clone();
        tasks.push(tokio::spawn(async move {
            for round in 0..10i64 {
                store
                    .write_presence(&[
                        (me, Status::Online, at(round)),
                        (people[(n + 1) % people.len()], Status::Away, at(round)),
                    ])
                    .await
                    .unwrap();
                store.replace_members(conv, &people[..=n]).await.unwrap();
                store.add_member(conv, me).await.unwrap();
                store.replace_contacts(me, &people).await.unwrap();
                store.ensure_user(me, Some("p"), Some("P")).await.unwrap();
                store.user(me).await.unwrap().unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for me in &people {
        let r = store.user(*me).await.unwrap().unwrap();
        assert_eq!(r.last_seen, Some(at(9)));
        let expected: Vec<Uuid> = people.iter().copied().filter(|p| p != me).collect();
        assert_eq!(store.contacts_of(*me).await.unwrap(), expected);
    }
    // Replacements never interleave: whichever ran last left a prefix of `people`, and
    // only self-adds can come on top of it.
    let members = store.members(conv).await.unwrap();
    assert!(!members.is_empty());
    assert!(members.iter().all(|m| people.contains(m)));
    assert!(members.contains(&people[0]));
}

// ---------------------------------------------------------------- SQLite only

#[tokio::test]
async fn sqlite_in_memory() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    let id = Uuid::new_v4();
    store.upsert_profile(id, "john", "John").await.unwrap();
    // A clone shares the same in-memory database.
    let clone = store.clone();
    assert_eq!(
        clone.user(id).await.unwrap().unwrap().username.as_deref(),
        Some("john")
    );
    store
        .write_presence(&[(id, Status::Online, at(0))])
        .await
        .unwrap();
    assert_eq!(
        clone.user(id).await.unwrap().unwrap().last_seen,
        Some(at(0))
    );
    store.close().await;
}

#[tokio::test]
async fn sqlite_file_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    assert!(!path.exists());
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(path.exists(), "the file is created");
    store.migrate().await.unwrap();
    let Store::Sqlite(pool) = &store else {
        panic!("sqlite url gave {}", store.backend());
    };
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);

    // Ids and times are stored as text in the documented formats.
    let id = Uuid::new_v4();
    store
        .write_presence(&[(id, Status::Away, at(0))])
        .await
        .unwrap();
    let (raw_id, raw_seen, raw_show): (String, String, i64) =
        sqlx::query_as("SELECT id, last_seen, show_last_seen FROM users")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(raw_id, id.hyphenated().to_string());
    assert_eq!(raw_seen, "2025-01-29T10:30:00.123Z");
    assert_eq!(raw_show, 1);
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'idx_%' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "idx_contacts_contact",
            "idx_conversation_members_user",
            "idx_users_last_seen",
            "idx_users_status"
        ]
    );
    store.close().await;
}

#[tokio::test]
async fn unsupported_url() {
    for url in ["mysql://u:secret@localhost/db", "presence.db", ""] {
        match Store::connect(url).await {
            Err(StoreError::UnsupportedUrl(shown)) => assert!(!shown.contains("secret")),
            other => panic!("{url:?}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- PostgreSQL only

/// The migration applies on top of a chat backend's existing `users` table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrates_existing_chat_database() {
    on_postgres_schema(false, |store, url| {
        Box::pin(existing_chat_database(store, url))
    })
    .await;
}

async fn existing_chat_database(store: &Store, _url: &str) {
    let Store::Postgres(pool) = store else {
        panic!("postgres url gave {}", store.backend());
    };
    let [old1, old2] = [Uuid::from_u128(1), Uuid::from_u128(2)];
    sqlx::query(
        "CREATE TABLE users (id UUID PRIMARY KEY, username TEXT NOT NULL DEFAULT '', email TEXT)",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO users (id, username, email) VALUES \
         ($1, 'alice', 'alice@example.com'), ($2, 'bob', 'bob@example.com')",
    )
    .bind(old1)
    .bind(old2)
    .execute(pool)
    .await
    .unwrap();

    store.migrate().await.unwrap();
    store.migrate().await.unwrap();

    for (id, name) in [(old1, "alice"), (old2, "bob")] {
        assert_eq!(
            store.user(id).await.unwrap().unwrap(),
            UserRecord {
                id,
                username: Some(name.into()),
                display_name: None,
                status: Status::Offline,
                last_seen: None,
                privacy: default_privacy(),
            }
        );
    }
    // The chat backend's own columns are untouched.
    let email: Option<String> = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(old1)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(email.as_deref(), Some("alice@example.com"));

    let schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await
        .unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes \
         WHERE schemaname = $1 AND tablename = 'users' AND indexname LIKE 'idx_users_%' \
         ORDER BY indexname",
    )
    .bind(&schema)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(indexes, ["idx_users_last_seen", "idx_users_status"]);

    // The presence operations work on the shared table, including bare rows and the
    // chat table's NOT NULL username (filled by its default).
    store
        .ensure_user(old1, Some("x"), Some("Alice"))
        .await
        .unwrap();
    let r = store.user(old1).await.unwrap().unwrap();
    assert_eq!(r.username.as_deref(), Some("alice"));
    assert_eq!(r.display_name.as_deref(), Some("Alice"));
    let fresh = Uuid::new_v4();
    store
        .write_presence(&[
            (old2, Status::Online, at(0)),
            (fresh, Status::Offline, at(1)),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.user(old2).await.unwrap().unwrap().status,
        Status::Online
    );
    let bare = store.user(fresh).await.unwrap().unwrap();
    assert_eq!((bare.username, bare.last_seen), (None, Some(at(1))));
    let named = store.ensure_user(fresh, Some("carol"), None).await.unwrap();
    assert_eq!(named.username.as_deref(), Some("carol"));
    let other = Uuid::new_v4();
    let no_names = store.ensure_user(other, None, None).await.unwrap();
    assert_eq!(no_names.username, None);
}

/// A chat table that refuses bare rows (a NOT NULL column without a default) costs only
/// the unknown users of a flush, never the known ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_flush_survives_strict_chat_table() {
    on_postgres_schema(false, |store, url| Box::pin(strict_chat_table(store, url))).await;
}

async fn strict_chat_table(store: &Store, _url: &str) {
    let Store::Postgres(pool) = store else {
        panic!("postgres url gave {}", store.backend());
    };
    let known = Uuid::new_v4();
    sqlx::query("CREATE TABLE users (id UUID PRIMARY KEY, email TEXT NOT NULL)")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO users (id, email) VALUES ($1, 'k@example.com')")
        .bind(known)
        .execute(pool)
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let unknown = Uuid::new_v4();
    store
        .write_presence(&[
            (known, Status::Offline, at(3)),
            (unknown, Status::Offline, at(3)),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.user(known).await.unwrap().unwrap().last_seen,
        Some(at(3))
    );
    assert_eq!(store.user(unknown).await.unwrap(), None);
}
