//! Presence attached to a chat backend's existing database: the chat's
//! `users` (with columns presence does not know, required ones, a trigger and
//! a table pointing at it) and its own `conversation_members` and `contacts`
//! are there first. After a whole walkthrough the chat's tables hold exactly
//! the rows they had, and `users` gained only the seed's columns and its
//! users' `last_seen`.

use std::sync::Arc;

use presence_e2e::*;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

const CHAT_SQLITE: &str = "
    CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL CHECK (email LIKE '%@%'),
        password_hash TEXT NOT NULL, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
    CREATE TABLE user_audit (user_id TEXT NOT NULL, action TEXT NOT NULL);
    CREATE TRIGGER users_inserted AFTER INSERT ON users
        BEGIN INSERT INTO user_audit VALUES (NEW.id, 'insert'); END;
    CREATE TRIGGER users_deleted AFTER DELETE ON users
        BEGIN INSERT INTO user_audit VALUES (OLD.id, 'delete'); END;
    CREATE TABLE messages (id INTEGER PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id), body TEXT NOT NULL);
    CREATE TABLE conversation_members (id INTEGER PRIMARY KEY, conversation_id TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users(id), role TEXT NOT NULL);
    CREATE TABLE contacts (id INTEGER PRIMARY KEY, owner_id TEXT NOT NULL, friend_id TEXT NOT NULL);";

const CHAT_POSTGRES: &str = "
    CREATE TABLE users (id UUID PRIMARY KEY, email TEXT NOT NULL CHECK (email LIKE '%@%'),
        password_hash TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());
    CREATE TABLE user_audit (user_id UUID NOT NULL, action TEXT NOT NULL);
    CREATE FUNCTION audit_users() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN INSERT INTO user_audit VALUES (NEW.id, 'insert'); RETURN NEW; END IF;
        INSERT INTO user_audit VALUES (OLD.id, 'delete'); RETURN OLD;
    END $$;
    CREATE TRIGGER users_audited AFTER INSERT OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION audit_users();
    CREATE TABLE messages (id BIGSERIAL PRIMARY KEY,
        user_id UUID NOT NULL REFERENCES users(id), body TEXT NOT NULL);
    CREATE TABLE conversation_members (id BIGSERIAL PRIMARY KEY, conversation_id UUID NOT NULL,
        user_id UUID NOT NULL REFERENCES users(id), role TEXT NOT NULL);
    CREATE TABLE contacts (id BIGSERIAL PRIMARY KEY, owner_id UUID NOT NULL, friend_id UUID NOT NULL);";

/// The chat's own columns of every chat table, one line a row, sorted.
const CHAT_ROWS: &str = "
    SELECT 'user ' || CAST(id AS TEXT) || ' ' || email || ' ' || password_hash
        || ' ' || CAST(created_at AS TEXT) FROM users
    UNION ALL SELECT 'audit ' || CAST(user_id AS TEXT) || ' ' || action FROM user_audit
    UNION ALL SELECT 'message ' || CAST(user_id AS TEXT) || ' ' || body FROM messages
    UNION ALL SELECT 'member ' || CAST(conversation_id AS TEXT) || ' ' || CAST(user_id AS TEXT)
        || ' ' || role FROM conversation_members
    UNION ALL SELECT 'contact ' || CAST(owner_id AS TEXT) || ' ' || CAST(friend_id AS TEXT)
        FROM contacts
    ORDER BY 1";

/// Talks to the chat's database beside the server.
enum Chat {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Chat {
    async fn open(url: &str) -> Chat {
        if url.starts_with("sqlite:") {
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
            Chat::Sqlite(
                sqlx::SqlitePool::connect_with(options.create_if_missing(true))
                    .await
                    .unwrap(),
            )
        } else {
            Chat::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    async fn script(&self, sqlite: &str, postgres: &str) {
        match self {
            Chat::Sqlite(p) => drop(sqlx::raw_sql(sqlite).execute(p).await.unwrap()),
            Chat::Postgres(p) => drop(sqlx::raw_sql(postgres).execute(p).await.unwrap()),
        }
    }

    async fn lines(&self, sql: &str) -> Vec<String> {
        match self {
            Chat::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
            Chat::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        }
    }

    async fn user_columns(&self) -> Vec<String> {
        let mut columns = self
            .lines(match self {
                Chat::Sqlite(_) => "SELECT name FROM pragma_table_info('users')",
                Chat::Postgres(_) => {
                    "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass('users') \
                     AND attnum > 0 AND NOT attisdropped"
                }
            })
            .await;
        columns.sort();
        columns
    }

    async fn last_seen_is_set(&self, user: Uuid) -> bool {
        let sql = format!(
            "SELECT CAST(id AS TEXT) FROM users WHERE id = '{user}' AND last_seen IS NOT NULL"
        );
        !self.lines(&sql).await.is_empty()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_chat_database_keeps_its_rows_through_a_whole_walkthrough() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    walkthrough_on_a_chat_database(url, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_chat_database_keeps_its_rows_through_a_whole_walkthrough() {
    let Some(schema) = PgSchema::create("postgres_a_chat_database_keeps_its_rows").await else {
        return;
    };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    walkthrough_on_a_chat_database(schema.url.clone(), dir).await;
    schema.drop().await;
}

async fn walkthrough_on_a_chat_database(url: String, dir: Arc<tempfile::TempDir>) {
    let chat = Chat::open(&url).await;
    chat.script(CHAT_SQLITE, CHAT_POSTGRES).await;
    let (alice, bob, stranger) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let chat_conversation = Uuid::new_v4();
    let rows = format!(
        "INSERT INTO users (id, email, password_hash) VALUES
            ('{alice}', 'alice@example.com', 'h1'), ('{bob}', 'bob@example.com', 'h2');
         INSERT INTO messages (user_id, body) VALUES ('{alice}', 'hi');
         INSERT INTO conversation_members (conversation_id, user_id, role) VALUES
            ('{chat_conversation}', '{alice}', 'owner');
         INSERT INTO contacts (owner_id, friend_id) VALUES ('{alice}', '{bob}');"
    );
    chat.script(&rows, &rows).await;
    let before = chat.lines(CHAT_ROWS).await;
    let columns_before = chat.user_columns().await;

    // The test keeps the directory: the chat's database outlives the server.
    let app = spawn_app_on(url.clone(), dir.clone(), |_| {}).await;
    // The chat backend syncs profiles (two of its users, one it has no row
    // for), a conversation and contacts.
    for (id, name) in [(alice, "Alice"), (bob, "Bob"), (stranger, "Sam")] {
        app.admin(
            Method::PUT,
            &format!("/api/v1/admin/users/{id}"),
            Some(json!({"username": name.to_lowercase(), "display_name": name})),
        )
        .await;
    }
    let conversation = app.conversation(&[alice, bob, stranger]).await;
    app.contacts(bob, &[alice, stranger]).await;
    app.contacts(alice, &[bob]).await;

    let mut b = app.connect(bob).await;
    let mut a = app.connect(alice).await;
    let s = app.connect(stranger).await;
    let online = b.next_of("user_status").await;
    assert_eq!(
        (online["user_id"].as_str(), online["status"].as_str()),
        (Some(&*alice.to_string()), Some("online"))
    );
    a.send("typing_start", json!({"conversation_id": conversation}))
        .await;
    let typing = b.next_of("user_typing").await;
    assert_eq!(typing["text"], "Alice is typing…");
    a.send("typing_stop", json!({"conversation_id": conversation}))
        .await;
    assert_eq!(b.next_of("user_typing").await["is_typing"], false);
    // Alice shows her last seen to her contacts only.
    let resp = app
        .http
        .put(app.url("/api/v1/users/me/privacy"))
        .bearer_auth(token_for(alice, None))
        .json(&json!({"last_seen_visibility": "contacts"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    a.close().await;
    s.close().await;
    let offline = loop {
        let e = b.next_of("user_status").await;
        if e["user_id"] == alice.to_string() {
            break e;
        }
    };
    assert_eq!(offline["status"], "offline");
    assert!(offline["last_seen"].is_string(), "{offline}");
    let (status, body) = app
        .get_as(stranger, &format!("/api/v1/users/{alice}/status"))
        .await;
    assert!(status.is_success());
    assert!(
        body["data"]["last_seen"].is_null(),
        "hidden from a non-contact: {body}"
    );
    let (_, body) = app
        .get_as(bob, &format!("/api/v1/users/{stranger}/status"))
        .await;
    assert_eq!(body["data"]["status"], "offline");
    b.close().await;
    app.stop().await.unwrap();

    // The chat's rows are exactly the rows it had: nothing inserted, deleted
    // (no audit rows) or changed in its own columns.
    assert_eq!(chat.lines(CHAT_ROWS).await, before);
    let mut expected = columns_before;
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
    assert_eq!(
        chat.user_columns().await,
        expected,
        "users gained the seed's columns only"
    );
    assert!(
        chat.last_seen_is_set(alice).await,
        "last_seen is written to users.last_seen"
    );
    let known = chat.lines("SELECT CAST(id AS TEXT) FROM users").await;
    assert_eq!(known.len(), 2, "the stranger is not in the chat's users");
}
