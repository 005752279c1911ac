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
use presence::store::{Edge, Relations, Store, StoreError, StoreOptions, UserRecord};
use uuid::Uuid;

type Body = for<'a> fn(&'a Store, &'a str) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

// ---------------------------------------------------------------- harness

async fn on_sqlite(body: Body) {
    on_sqlite_with(None, body).await;
}

/// A chat backend's own `users` table, there before presence: presence may
/// not insert into it (an email is required) and keeps unknown users apart.
const CHAT_USERS_SQLITE: &str =
    "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL CHECK (email LIKE '%@%'))";
const CHAT_USERS_POSTGRES: &str =
    "CREATE TABLE users (id UUID PRIMARY KEY, email TEXT NOT NULL CHECK (email LIKE '%@%'))";

async fn on_sqlite_attached(body: Body) {
    on_sqlite_with(Some(CHAT_USERS_SQLITE), body).await;
}

async fn on_sqlite_with(chat: Option<&str>, body: Body) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("presence.db").display());
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    if let Some(sql) = chat {
        sqlx::query(sql)
            .execute(store.sqlite_pool().unwrap())
            .await
            .unwrap();
    }
    let layout = store.migrate().await.unwrap();
    assert_eq!(layout.owned, chat.is_none());
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
async fn on_postgres_schema(setup: Setup, body: Body) {
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
        if setup == Setup::Attached {
            sqlx::query(CHAT_USERS_POSTGRES)
                .execute(store.postgres_pool().unwrap())
                .await
                .unwrap();
        }
        if setup != Setup::Bare {
            let layout = store.migrate().await.unwrap();
            assert_eq!(layout.owned, setup == Setup::Fresh);
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
    on_postgres_schema(Setup::Fresh, body).await;
}

async fn on_postgres_attached(body: Body) {
    on_postgres_schema(Setup::Attached, body).await;
}

/// What a PostgreSQL test body gets.
#[derive(Clone, Copy, PartialEq)]
enum Setup {
    /// An empty schema, not migrated.
    Bare,
    /// Migrated; presence owns `users`.
    Fresh,
    /// A chat's `users` first, then migrated.
    Attached,
}

/// Declares each body as a test on each backend, once on a fresh database
/// (presence creates and owns `users`) and once attached to a chat's `users`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        on_both_backends!(@mod sqlite on_sqlite $($name)*);
        on_both_backends!(@mod postgres on_postgres $($name)*);
        on_both_backends!(@mod sqlite_attached on_sqlite_attached $($name)*);
        on_both_backends!(@mod postgres_attached on_postgres_attached $($name)*);
    };
    (@mod $module:ident $harness:ident $($name:ident)*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$harness(|store, url| Box::pin(super::$name(store, url))).await;
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
    let pool = store.sqlite_pool().expect("an sqlite url gives sqlite");
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
            "idx_presence_contacts_contact",
            "idx_presence_conversation_members_user",
            "idx_presence_users_status",
            "idx_presence_webhook_outbox_user",
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

// ---------------------------------------------------------------- a chat's database

/// A chat backend's schema, there before presence: `users` with columns presence does
/// not know (required, checked, one read back as a name), a table pointing at it, and
/// its own `conversation_members` and `contacts` of another shape.
const CHAT_SQLITE: &str = "
    CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL CHECK (email LIKE '%@%'),
        password_hash TEXT NOT NULL, username TEXT NOT NULL);
    CREATE TABLE messages (id INTEGER PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id));
    CREATE TABLE conversation_members (id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users(id), role TEXT NOT NULL);
    CREATE TABLE contacts (id INTEGER PRIMARY KEY, owner_id TEXT NOT NULL, friend_id TEXT NOT NULL);";
const CHAT_POSTGRES: &str = "
    CREATE TABLE users (id UUID PRIMARY KEY, email TEXT NOT NULL CHECK (email LIKE '%@%'),
        password_hash TEXT NOT NULL, username TEXT NOT NULL);
    CREATE TABLE messages (id BIGSERIAL PRIMARY KEY, user_id UUID NOT NULL REFERENCES users(id));
    CREATE TABLE conversation_members (id BIGSERIAL PRIMARY KEY, conversation_id UUID NOT NULL,
        user_id UUID NOT NULL REFERENCES users(id), role TEXT NOT NULL);
    CREATE TABLE contacts (id BIGSERIAL PRIMARY KEY, owner_id UUID NOT NULL, friend_id UUID NOT NULL);";

/// The chat's rows (its own columns only) and the columns of `users`, to compare
/// before and after presence.
async fn chat_state(store: &Store) -> (Vec<String>, Vec<String>) {
    let rows_sql = "SELECT 'user ' || CAST(id AS TEXT) || ' ' || email || ' ' || password_hash \
           || ' ' || username FROM users \
         UNION ALL SELECT 'member ' || CAST(conversation_id AS TEXT) || ' ' \
           || CAST(user_id AS TEXT) || ' ' || role FROM conversation_members \
         UNION ALL SELECT 'contact ' || CAST(owner_id AS TEXT) || ' ' || CAST(friend_id AS TEXT) \
           FROM contacts \
         UNION ALL SELECT 'message ' || CAST(user_id AS TEXT) FROM messages";
    let (mut rows, mut columns): (Vec<String>, Vec<String>) = match store.postgres_pool() {
        Some(pool) => (
            sqlx::query_scalar(rows_sql).fetch_all(pool).await.unwrap(),
            sqlx::query_scalar(
                "SELECT attname::text FROM pg_attribute \
                 WHERE attrelid = to_regclass('users') AND attnum > 0 AND NOT attisdropped",
            )
            .fetch_all(pool)
            .await
            .unwrap(),
        ),
        None => {
            let pool = store.sqlite_pool().unwrap();
            (
                sqlx::query_scalar(rows_sql).fetch_all(pool).await.unwrap(),
                sqlx::query_scalar("SELECT name FROM pragma_table_info('users')")
                    .fetch_all(pool)
                    .await
                    .unwrap(),
            )
        }
    };
    rows.sort();
    columns.sort();
    (rows, columns)
}

async fn execute_script(store: &Store, sqlite: &str, postgres: &str) {
    match store.postgres_pool() {
        Some(pool) => {
            sqlx::raw_sql(postgres).execute(pool).await.unwrap();
        }
        None => {
            sqlx::raw_sql(sqlite)
                .execute(store.sqlite_pool().unwrap())
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_attached_to_a_chat_database_writes_only_the_seed_columns() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let store = Store::connect(&url).await.unwrap();
    attached_to_a_chat_database(&store, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_attached_to_a_chat_database_writes_only_the_seed_columns() {
    on_postgres_schema(Setup::Bare, |store, url| {
        Box::pin(attached_to_a_chat_database(store, url))
    })
    .await;
}

async fn attached_to_a_chat_database(store: &Store, url: &str) {
    execute_script(store, CHAT_SQLITE, CHAT_POSTGRES).await;
    let [alice, bob, stranger] = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::new_v4()];
    let conversation = Uuid::new_v4();
    let seed = format!(
        "INSERT INTO users (id, email, password_hash, username) VALUES \
           ('{alice}', 'alice@example.com', 'x1', 'alice'), ('{bob}', 'bob@example.com', 'x2', 'bob');
         INSERT INTO messages (user_id) VALUES ('{alice}');
         INSERT INTO conversation_members (conversation_id, user_id, role) VALUES \
           ('{conversation}', '{alice}', 'owner'), ('{conversation}', '{bob}', 'member');
         INSERT INTO contacts (owner_id, friend_id) VALUES ('{alice}', '{bob}');"
    );
    execute_script(store, &seed, &seed).await;
    let (rows, columns) = chat_state(store).await;

    let layout = store.migrate().await.unwrap();
    assert!(!layout.owned && layout.chat_username && !layout.chat_display_name);
    store.migrate().await.unwrap();

    // A chat user: names from the chat's column until the admin API sets them.
    let a = store.user(alice).await.unwrap().unwrap();
    assert_eq!(
        (a.username.as_deref(), a.status),
        (Some("alice"), Status::Offline)
    );
    let p = store.upsert_profile(bob, "bobby", "Bob").await.unwrap();
    assert_eq!(
        (p.username.as_deref(), p.display_name.as_deref()),
        (Some("bobby"), Some("Bob"))
    );
    let e = store
        .ensure_user(alice, Some("token-name"), Some("Alice"))
        .await
        .unwrap();
    assert_eq!(
        (e.username.as_deref(), e.display_name.as_deref()),
        (Some("alice"), Some("Alice"))
    );
    // Membership and contacts are presence's own, whatever the chat's tables hold.
    assert!(store.members(conversation).await.unwrap().is_empty());
    store
        .replace_members(conversation, &[alice, stranger])
        .await
        .unwrap();
    store
        .replace_contacts(bob, &[alice, stranger])
        .await
        .unwrap();
    assert_eq!(store.watchers_of(alice).await.unwrap(), vec![bob]);
    // Privacy and last seen of a chat user land on its row; a stranger's in presence's.
    let private = store
        .set_privacy(alice, Some(false), Some(Visibility::Contacts))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(private.privacy.last_seen_visibility, Visibility::Contacts);
    store
        .ensure_user(stranger, Some("sam"), None)
        .await
        .unwrap();
    store
        .write_presence(&[
            (alice, Status::Offline, at(5)),
            (bob, Status::Online, at(6)),
            (stranger, Status::Offline, at(7)),
        ])
        .await
        .unwrap();
    assert_eq!(store.reset_statuses().await.unwrap(), 1);
    let s = store.user(stranger).await.unwrap().unwrap();
    assert_eq!(
        (s.username.as_deref(), s.last_seen),
        (Some("sam"), Some(at(7)))
    );
    let users = store.users(&[alice, bob, stranger]).await.unwrap();
    assert_eq!(users.len(), 3);

    // The chat's rows are the rows it had: nothing inserted, deleted or changed but
    // the seed's columns, which `users` gained and nothing else.
    let (rows_after, columns_after) = chat_state(store).await;
    assert_eq!(rows_after, rows);
    let mut expected = columns.clone();
    expected.extend(
        [
            "last_seen",
            "last_seen_visibility",
            "show_last_seen",
            "status",
        ]
        .map(String::from),
    );
    expected.sort();
    assert_eq!(columns_after, expected);
    let seen: Option<DateTime<Utc>> = match store.postgres_pool() {
        Some(pool) => sqlx::query_scalar("SELECT last_seen FROM users WHERE id = $1")
            .bind(alice)
            .fetch_one(pool)
            .await
            .unwrap(),
        None => sqlx::query_scalar("SELECT last_seen FROM users WHERE id = $1")
            .bind(alice.hyphenated())
            .fetch_one(store.sqlite_pool().unwrap())
            .await
            .unwrap(),
    };
    assert_eq!(seen, Some(at(5)), "last_seen is written to users.last_seen");

    // A restart reads the same layout back.
    let again = Store::connect(url).await.unwrap();
    assert_eq!(again.layout().await.unwrap(), layout);
    assert_eq!(
        again.user(alice).await.unwrap().unwrap().last_seen,
        Some(at(5))
    );
    again.close().await;
}

// ---------------------------------------------------------------- older versions

/// Runs the migrations an older version ran (kept in `migrations/legacy`), through
/// sqlx as it did, then writes data the way it did.
async fn legacy_deployment(store: &Store, chat_users: bool) -> (Uuid, Uuid, Uuid) {
    let backend = store.backend();
    if chat_users {
        let sql = "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL)";
        execute_script(store, sql, &sql.replace("TEXT PRIMARY", "UUID PRIMARY")).await;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations/legacy")
        .join(backend);
    let migrator = sqlx::migrate::Migrator::new(dir).await.unwrap();
    match store.postgres_pool() {
        Some(pool) => migrator.run(pool).await.unwrap(),
        None => migrator.run(store.sqlite_pool().unwrap()).await.unwrap(),
    }
    let (user, contact, conversation) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let email = if chat_users { "email, " } else { "" };
    let email_value = if chat_users { "'u@example.com', " } else { "" };
    let data = format!(
        "INSERT INTO users (id, {email}username, display_name, last_seen) \
           VALUES ('{user}', {email_value}'ann', 'Ann', '2025-01-29T10:30:00.123Z');
         INSERT INTO conversation_members (conversation_id, user_id) VALUES ('{conversation}', '{user}');
         INSERT INTO contacts (user_id, contact_id) VALUES ('{user}', '{contact}');
         INSERT INTO plugin_active (slot, sha256) VALUES ('typing', 'abc');"
    );
    execute_script(store, &data, &data).await;
    (user, contact, conversation)
}

async fn older_version_is_adopted(store: &Store, chat_users: bool) {
    let (user, contact, conversation) = legacy_deployment(store, chat_users).await;
    let layout = store.migrate().await.unwrap();
    assert_eq!(layout.owned, !chat_users);
    store.migrate().await.unwrap();
    let r = store.user(user).await.unwrap().unwrap();
    assert_eq!(
        (
            r.username.as_deref(),
            r.display_name.as_deref(),
            r.last_seen
        ),
        (Some("ann"), Some("Ann"), Some(at(0)))
    );
    assert_eq!(store.members(conversation).await.unwrap(), vec![user]);
    assert_eq!(store.contacts_of(user).await.unwrap(), vec![contact]);
    assert_eq!(
        store.active_plugins().await.unwrap(),
        vec![("typing".to_owned(), "abc".to_owned())]
    );
    // The old names and sqlx's bookkeeping are gone; nothing was lost on the way.
    let leftover = "SELECT COUNT(*) FROM (SELECT 1 FROM conversation_members) t";
    let gone = match store.postgres_pool() {
        Some(pool) => sqlx::query_scalar::<_, i64>(leftover)
            .fetch_one(pool)
            .await
            .is_err(),
        None => sqlx::query_scalar::<_, i64>(leftover)
            .fetch_one(store.sqlite_pool().unwrap())
            .await
            .is_err(),
    };
    assert!(gone, "conversation_members was renamed");
    let sqlx_table = "SELECT COUNT(*) FROM _sqlx_migrations";
    let kept = match store.postgres_pool() {
        Some(pool) => sqlx::query_scalar::<_, i64>(sqlx_table)
            .fetch_one(pool)
            .await
            .is_ok(),
        None => sqlx::query_scalar::<_, i64>(sqlx_table)
            .fetch_one(store.sqlite_pool().unwrap())
            .await
            .is_ok(),
    };
    assert!(
        !kept,
        "_sqlx_migrations held only presence's entries and is gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_an_older_version_is_adopted_with_its_data() {
    // Older versions could not run on SQLite beside a chat's own `users`.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let store = Store::connect(&url).await.unwrap();
    older_version_is_adopted(&store, false).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_an_older_version_is_adopted_with_its_data() {
    on_postgres_schema(Setup::Bare, |store, _| {
        Box::pin(older_version_is_adopted(store, false))
    })
    .await;
    on_postgres_schema(Setup::Bare, |store, _| {
        Box::pin(older_version_is_adopted(store, true))
    })
    .await;
}

/// The chat's own sqlx migrations are the chat's: presence leaves them alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_backends_own_sqlx_migrations_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let store = Store::connect(&url).await.unwrap();
    let pool = store.sqlite_pool().unwrap();
    sqlx::raw_sql(
        "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
           installed_on TEXT, success BOOLEAN NOT NULL, checksum BLOB NOT NULL, \
           execution_time BIGINT NOT NULL);
         INSERT INTO _sqlx_migrations VALUES (1, 'chat', NULL, 1, x'00', 1);
         CREATE TABLE conversation_members (conversation_id TEXT, user_id TEXT);",
    )
    .execute(pool)
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    // Its `conversation_members` has presence's old shape, but no older presence made it.
    let chat: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM conversation_members")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(chat, 0);
    store.close().await;
}

// ---------------------------------------------------------------- PostgreSQL only

/// With a schema of its own, presence's tables live there and the chat's schema
/// gains only the seed's columns on `users`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tables_live_in_the_configured_schema() {
    on_postgres_schema(Setup::Bare, |store, url| Box::pin(own_schema(store, url))).await;
}

async fn own_schema(store: &Store, url: &str) {
    let pool = store.postgres_pool().unwrap();
    sqlx::query(CHAT_USERS_POSTGRES)
        .execute(pool)
        .await
        .unwrap();
    let chat_schema: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(pool)
        .await
        .unwrap();
    let own = format!("{chat_schema}_presence");
    let options = StoreOptions {
        schema: Some(own.clone()),
    };
    let presence = Store::connect_with(url, &options).await.unwrap();
    assert!(!presence.migrate().await.unwrap().owned);
    let user = Uuid::new_v4();
    presence.upsert_profile(user, "ann", "Ann").await.unwrap();
    presence
        .replace_contacts(user, &[Uuid::new_v4()])
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables \
         WHERE table_schema IN ($1, $2) ORDER BY 1",
    )
    .bind(&chat_schema)
    .bind(&own)
    .fetch_all(pool)
    .await
    .unwrap();
    let expected: Vec<String> = [
        format!("{chat_schema}.users"),
        format!("{own}.presence_contacts"),
        format!("{own}.presence_conversation_members"),
        format!("{own}.presence_meta"),
        format!("{own}.presence_migrations"),
        format!("{own}.presence_plugin_active"),
        format!("{own}.presence_plugin_components"),
        format!("{own}.presence_users"),
        format!("{own}.presence_webhook_outbox"),
    ]
    .into();
    assert_eq!(tables, expected);
    presence.close().await;
    sqlx::query(&format!("DROP SCHEMA {own} CASCADE"))
        .execute(pool)
        .await
        .unwrap();
    assert!(matches!(
        Store::connect_with("sqlite::memory:", &options).await,
        Err(StoreError::BadSchema(_))
    ));
    let bad = StoreOptions {
        schema: Some("x; DROP TABLE users".into()),
    };
    assert!(matches!(
        Store::connect_with(url, &bad).await,
        Err(StoreError::BadSchema(_))
    ));
}
