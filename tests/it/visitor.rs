//! Access and erasure requests (`aia-chat visitor …` and the admin API) and retention: every
//! table has a privacy rule (checked against the database's own catalogue), an export holds
//! everything, and an erasure leaves nothing of the visitor in any column of any table, nor on
//! disk, while another visitor keeps theirs. On SQLite always and on PostgreSQL when
//! `TEST_DATABASE_URL` is set.

use std::time::{Duration, Instant};

use aia_chat::store::privacy::{self, Rule};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::chatwoot_fake::{self, FakeChatwoot};
use crate::store::fresh_postgres;
use crate::support::{ADMIN_PASSWORD, AdminSession, TestApp, Ws, loud_skip, sign_in};
use crate::trello_fake::FakeTrello;

/// Words only the erased visitor ever wrote, and their address.
const CANARY: &str = "zebra-canary-4711";
const EMAIL: &str = "dana.canary@example.org";
/// What the other visitor of the same shop wrote.
const OTHER: &str = "okapi-keeper-0815";

/// Where a test's database is, to read its catalogue and scan its columns directly.
enum Db {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Db {
    fn of(app: &TestApp, postgres: Option<&str>) -> Db {
        match postgres {
            Some(url) => Db::Postgres(url.to_string()),
            None => Db::Sqlite(app.data_dir().join("aia-chat.db")),
        }
    }

    /// Every table, from the database's catalogue.
    async fn tables(&self) -> Vec<String> {
        match self {
            Db::Sqlite(path) => {
                let mut conn = sqlite(path).await;
                let rows = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
                rows.iter().map(|r| r.get(0)).collect()
            }
            Db::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let rows = sqlx::query(
                    "SELECT table_name::TEXT FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap();
                rows.iter().map(|r| r.get(0)).collect()
            }
        }
    }

    /// `table.column` of every text or binary column (every column, on SQLite) holding `needle`.
    async fn columns_containing(&self, needle: &str) -> Vec<String> {
        let mut found = Vec::new();
        match self {
            Db::Sqlite(path) => {
                let mut conn = sqlite(path).await;
                for table in self.tables().await {
                    let columns: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info($1)")
                        .bind(&table)
                        .fetch_all(&mut conn)
                        .await
                        .unwrap()
                        .iter()
                        .map(|r| r.get(0))
                        .collect();
                    assert!(!columns.is_empty(), "{table} has columns");
                    for column in columns {
                        let sql = format!(
                            "SELECT COUNT(*) FROM \"{table}\" WHERE instr(CAST(\"{column}\" AS BLOB), CAST($1 AS BLOB)) > 0"
                        );
                        let n: i64 = sqlx::query(sqlx::AssertSqlSafe(sql))
                            .bind(needle)
                            .fetch_one(&mut conn)
                            .await
                            .unwrap()
                            .get(0);
                        if n > 0 {
                            found.push(format!("{table}.{column}"));
                        }
                    }
                }
            }
            Db::Postgres(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let columns = sqlx::query(
                    "SELECT table_name::TEXT, column_name::TEXT, data_type::TEXT FROM information_schema.columns \
                     WHERE table_schema = current_schema() \
                     AND data_type IN ('text', 'character varying', 'character', 'bytea', 'json', 'jsonb')",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap();
                assert!(columns.len() > 20, "the text columns: {}", columns.len());
                for row in columns {
                    let (table, column, kind): (String, String, String) = (row.get(0), row.get(1), row.get(2));
                    let test = if kind == "bytea" {
                        format!("position(convert_to($1, 'UTF8') IN \"{column}\") > 0")
                    } else {
                        format!("strpos(CAST(\"{column}\" AS TEXT), $1) > 0")
                    };
                    let sql = format!("SELECT COUNT(*) FROM \"{table}\" WHERE {test}");
                    let n: i64 =
                        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(needle).fetch_one(&mut conn).await.unwrap().get(0);
                    if n > 0 {
                        found.push(format!("{table}.{column}"));
                    }
                }
            }
        }
        found
    }
}

async fn sqlite(path: &std::path::Path) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap()
}

/// Files under `dir` (recursively) whose bytes contain `needle`: the database, its WAL, the
/// knowledge indexes and vectors, anything.
fn files_containing(dir: &std::path::Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Every table in the catalogue has a rule, and every rule names a table that exists.
async fn every_table_has_a_rule(db: &Db) {
    let tables = db.tables().await;
    let missing: Vec<&String> = tables.iter().filter(|t| privacy::rule(t).is_none()).collect();
    assert!(missing.is_empty(), "tables without a privacy rule in store::privacy::TABLES: {missing:?}");
    for rule in privacy::TABLES {
        let sqlite_only = rule.table.starts_with("sqlite_");
        assert!(
            tables.iter().any(|t| t == rule.table) || (sqlite_only && matches!(db, Db::Postgres(_))),
            "{} has a rule but no table",
            rule.table
        );
    }
    let visitor: Vec<&str> = privacy::visitor_tables().map(|(t, _)| t).collect();
    assert_eq!(visitor, ["messages", "tasks", "operator_outbox", "operator_links", "sessions"]);
}

#[tokio::test]
async fn visitor_every_table_has_a_privacy_rule() {
    let dir = tempfile::tempdir().unwrap();
    drop(aia_chat::store::open(None, dir.path()).await.unwrap());
    every_table_has_a_rule(&Db::Sqlite(dir.path().join("aia-chat.db"))).await;
    let Some(url) = fresh_postgres().await else {
        loud_skip("postgres", "TEST_DATABASE_URL is not set");
        return;
    };
    drop(aia_chat::store::open(Some(&url), dir.path()).await.unwrap());
    every_table_has_a_rule(&Db::Postgres(url)).await;
    assert_eq!(privacy::rule("model_usage"), Some(Rule::Aggregate), "totals stay with the budget");
}

/// Waits (up to 15 s) until `ok` gives something.
async fn eventually<T>(what: &str, mut ok: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = ok().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A visitor with everything we keep: identity, messages with the canary, a Trello card, a
/// hand-off to Chatwoot and a delivery still queued for it; and another visitor of the shop.
struct Scene {
    chatwoot: FakeChatwoot,
    trello: FakeTrello,
    admin: AdminSession,
    /// The erased visitor's socket, still open.
    ws: Ws,
    conversation: String,
    session: i64,
    other_session: i64,
}

async fn scene(app: &TestApp) -> Scene {
    let chatwoot = FakeChatwoot::start().await;
    let trello = FakeTrello::start().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let mut settings = serde_json::Map::new();
    for pair in chatwoot.client_settings().into_iter().chain(trello.client_settings()) {
        let (k, v) = pair.split_once('=').unwrap();
        settings.insert(k.into(), json!(v));
    }
    settings.insert("tasks_require_confirmation".into(), json!("off"));
    let (status, body) = admin.call(Method::PATCH, "/api/admin/clients/demo", json!({ "settings": settings })).await;
    assert_eq!(status, 200, "{body}");
    eventually("the settings loaded", async || {
        app.state.registry.get("demo").filter(|c| !c.settings.get("operator_url").is_empty())
    })
    .await;

    let (mut ws, welcome) = app.visitor(None).await;
    let conversation = welcome["conversationId"].as_str().unwrap().to_string();
    ws.send(json!({"type": "identify", "name": "Dana", "email": EMAIL})).await;
    ws.next_of("identified").await;
    ws.ask("v1", &format!("Please call me back about {CANARY}")).await;
    let cards = eventually("the Trello card", async || Some(trello.cards()).filter(|c| !c.is_empty())).await;
    assert!(cards[0].desc.contains(CANARY), "the card quotes the visitor");
    ws.send(json!({"type": "handoff"})).await;
    eventually("the Chatwoot conversation", async || chatwoot.conversations().into_iter().next()).await;
    let store = app.state.store.clone();
    let session = store.session_by_public_id(&conversation).await.unwrap().unwrap().id;
    eventually("the hand-off delivered", async || {
        store.operator_link(session).await.unwrap().filter(|l| l.conversation_id.is_some())
    })
    .await;
    eventually("the hand-off's outbox emptied", async || {
        store.outbox_of_session(session).await.unwrap().is_empty().then_some(())
    })
    .await;
    // Chatwoot goes away: the next message waits in the outbox.
    chatwoot.down().await;
    ws.send(json!({"type": "message", "id": "v2", "text": format!("{CANARY} while you are away")})).await;
    ws.next_of("ack").await;
    assert_eq!(store.outbox_of_session(session).await.unwrap().len(), 1, "a delivery is queued");

    let (mut other, welcome) = app.visitor(None).await;
    other.send(json!({"type": "identify", "email": "someone.else@example.org"})).await;
    other.next_of("identified").await;
    other.ask("o1", &format!("How long does shipping take? {OTHER}")).await;
    let other_conversation = welcome["conversationId"].as_str().unwrap();
    let other_session = store.session_by_public_id(other_conversation).await.unwrap().unwrap().id;
    Scene { chatwoot, trello, admin, ws, conversation, session, other_session }
}

/// The export has every message, the task and its card, the hand-off and the queued delivery.
async fn check_export(app: &TestApp, scene: &Scene, export: &Value) {
    let store = &app.state.store;
    let clients = export["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{export:#}");
    assert_eq!(clients[0]["client"], "demo");
    let conversations = clients[0]["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1, "the other visitor is not in it");
    let c = &conversations[0];
    assert_eq!(c["conversationId"], scene.conversation.as_str());
    assert_eq!((c["visitor"]["email"].as_str(), c["visitor"]["verified"].as_bool()), (Some(EMAIL), Some(false)));
    let (stored, _) = store.messages_page(scene.session, None, 1_000).await.unwrap();
    let seqs: Vec<i64> = c["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, stored.iter().map(|m| m.seq).collect::<Vec<_>>(), "every message");
    assert!(stored.len() >= 4, "question, answer, hand-off notice, the queued one: {}", stored.len());
    let text = export.to_string();
    assert!(text.contains(&format!("{CANARY} while you are away")) && !text.contains(OTHER));
    assert_eq!(c["tasks"].as_array().map(Vec::len), Some(1), "{c:#}");
    assert!(c["tasks"].to_string().contains(CANARY), "the task request quotes the visitor");
    let deliveries = c["pendingDeliveries"].as_array().unwrap();
    assert!(deliveries.len() == 1 && deliveries[0]["payload"].to_string().contains(CANARY), "{deliveries:?}");

    let chatwoot = scene.chatwoot.conversations().into_iter().next().unwrap();
    let up = &export["upstream"]["chatwootConversations"][0];
    assert_eq!(up["chatwootConversationId"], chatwoot.id, "{export:#}");
    assert_eq!(c["operator"]["chatwootConversationId"], chatwoot.id);
    let url =
        format!("{}/app/accounts/{}/conversations/{}", scene.chatwoot.base(), chatwoot_fake::ACCOUNT_ID, chatwoot.id);
    assert_eq!(up["url"].as_str(), Some(url.as_str()));
    let card = &scene.trello.cards()[0];
    let card_url = export["upstream"]["trelloCards"][0]["url"].as_str().expect("the card's link");
    assert!(card_url == card.url() || card_url == card.short_url(), "{card_url}");
    assert_eq!(c["tasks"][0]["url"].as_str(), Some(card_url));
}

/// Nothing of the visitor is left in any column of any table (nor, on SQLite, in any file of
/// the data directory: database, WAL, indexes, vectors); the other visitor keeps theirs.
async fn check_erased(app: &TestApp, scene: &Scene, db: &Db) {
    let store = &app.state.store;
    for needle in [CANARY, EMAIL] {
        assert_eq!(db.columns_containing(needle).await, Vec::<String>::new(), "{needle} left in the database");
    }
    assert!(store.session_by_public_id(&scene.conversation).await.unwrap().is_none());
    assert!(store.outbox_of_session(scene.session).await.unwrap().is_empty(), "no delivery left");
    assert!(store.tasks_of_session(scene.session).await.unwrap().is_empty());
    assert!(store.operator_link(scene.session).await.unwrap().is_none());
    assert!(store.messages_page(scene.session, None, 100).await.unwrap().0.is_empty());
    if let Db::Sqlite(_) = db {
        for needle in [CANARY, EMAIL] {
            assert_eq!(files_containing(&app.data_dir(), needle), Vec::<String>::new(), "{needle} left on disk");
        }
    }
    assert_eq!(db.columns_containing(OTHER).await, ["messages.text"], "the other visitor is untouched");
    assert_eq!(store.messages_page(scene.other_session, None, 100).await.unwrap().0.len(), 2);
    assert!(store.session_by_id(scene.other_session).await.unwrap().unwrap().visitor_email.is_some());
}

/// The erased visitor's socket is told (`reconnect`, reason `erased`) and closed normally.
async fn check_socket_ended(ws: &mut Ws) {
    let frame = ws.next_of("reconnect").await;
    assert_eq!((frame["reason"].as_str(), frame["afterMs"].as_u64()), (Some("erased"), Some(0)));
    assert_eq!(ws.close_code().await, Some(1000));
}

async fn through_the_admin_api(postgres: Option<String>) {
    let app = TestApp::spawn_with(|s| {
        if let Some(url) = &postgres {
            s.store.database_url = Some(url.clone());
            s.store.secret_key = Some("cd".repeat(32));
        }
    })
    .await;
    let db = Db::of(&app, postgres.as_deref());
    let mut scene = scene(&app).await;
    let admin = scene.admin.clone();

    // Who may ask: a client admin of another shop sees no such client here (404, as for every
    // client route), may not search every client (403), and finds nobody in its own shop.
    assert_eq!(admin.call(Method::POST, "/api/admin/clients", json!({"uid": "other"})).await.0, 201);
    let owner = json!({"username": "owner", "password": "owner-password-1", "role": "client", "clients": ["other"]});
    assert_eq!(admin.call(Method::POST, "/api/admin/accounts", owner).await.0, 201);
    let owner = sign_in(&app.base, "owner", "owner-password-1").await;
    let in_demo = json!({"visitor": EMAIL, "client": "demo"});
    let everywhere = json!({"visitor": EMAIL});
    let code = |r: (u16, Value)| (r.0, r.1["error"]["code"].as_str().unwrap_or_default().to_string());
    for path in ["/api/admin/visitors/export", "/api/admin/visitors/delete"] {
        assert_eq!(code(owner.call(Method::POST, path, in_demo.clone()).await), (404, "unknown_client".into()));
        assert_eq!(code(owner.call(Method::POST, path, everywhere.clone()).await), (403, "server_admin_only".into()));
        let own = json!({"visitor": EMAIL, "client": "other"});
        assert_eq!(code(owner.call(Method::POST, path, own).await), (404, "unknown_visitor".into()), "not theirs");
    }
    // Unknown and invalid visitors and clients; the CSRF token is required.
    for unknown in ["nobody@example.org", "c_000000000000000000000000", " \t"] {
        let r = admin.call(Method::POST, "/api/admin/visitors/export", json!({"visitor": unknown})).await;
        assert_eq!(code(r), (404, "unknown_visitor".into()), "{unknown:?}");
    }
    let r = admin.call(Method::POST, "/api/admin/visitors/delete", json!({"visitor": "", "client": "demo"})).await;
    assert_eq!(code(r), (422, "invalid_visitor".into()));
    let r = admin.call(Method::POST, "/api/admin/visitors/export", json!({"visitor": EMAIL, "client": "nope"})).await;
    assert_eq!(code(r), (404, "unknown_client".into()));
    let no_csrf = crate::support::http()
        .post(format!("{}/api/admin/visitors/delete", app.base))
        .header("cookie", &admin.cookie)
        .json(&everywhere)
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), 403);
    assert!(app.state.store.session_by_id(scene.session).await.unwrap().is_some(), "nothing deleted so far");

    // Export, by email in the client and by conversation id everywhere: the same visitor.
    let (status, export) = admin.call(Method::POST, "/api/admin/visitors/export", in_demo.clone()).await;
    assert_eq!(status, 200, "{export}");
    check_export(&app, &scene, &export).await;
    let by_id = json!({"visitor": scene.conversation});
    let (status, again) = admin.call(Method::POST, "/api/admin/visitors/export", by_id).await;
    assert_eq!((status, &again["clients"]), (200, &export["clients"]));

    // Delete: counts per table, what the operator must still delete upstream, the socket ended.
    let upper = json!({"visitor": format!("  {}  ", EMAIL.to_uppercase())});
    let (status, erased) = admin.call(Method::POST, "/api/admin/visitors/delete", upper).await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["conversations"], json!([{"client": "demo", "conversationId": scene.conversation}]));
    assert_eq!(erased["deleted"]["sessions"], 1);
    assert!(erased["deleted"]["messages"].as_u64().unwrap() >= 4, "{erased}");
    assert_eq!((erased["deleted"]["tasks"].as_u64(), erased["deleted"]["operator_links"].as_u64()), (Some(1), Some(1)));
    assert_eq!(erased["deleted"]["operator_outbox"], 1);
    assert_eq!(erased["upstream"], export["upstream"], "the Chatwoot conversation and the card to delete there");
    check_socket_ended(&mut scene.ws).await;
    check_erased(&app, &scene, &db).await;
    let r = admin.call(Method::POST, "/api/admin/visitors/delete", in_demo).await;
    assert_eq!(code(r), (404, "unknown_visitor".into()), "nothing left to delete");
}

#[tokio::test]
async fn visitor_export_and_erasure_through_the_admin_api_on_sqlite() {
    through_the_admin_api(None).await;
}

#[tokio::test]
async fn visitor_export_and_erasure_through_the_admin_api_on_postgres() {
    let Some(url) = fresh_postgres().await else {
        loud_skip("postgres", "TEST_DATABASE_URL is not set");
        return;
    };
    through_the_admin_api(Some(url)).await;
}

#[tokio::test]
async fn visitor_export_and_erasure_through_the_cli() {
    let app = TestApp::spawn().await;
    let db = Db::of(&app, None);
    let mut scene = scene(&app).await;

    let out = app.cli(&["visitor", "export", EMAIL]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let export: Value = serde_json::from_slice(&out.stdout).unwrap();
    check_export(&app, &scene, &export).await;
    let file = app.data_dir().join("export.json");
    let out = app.cli(&["visitor", "export", &scene.conversation, "--client", "demo", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["clients"], export["clients"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "the owner's only");
    }
    std::fs::remove_file(&file).unwrap();

    for (args, why) in [
        (vec!["visitor", "export", "nobody@example.org"], "no conversation matches"),
        (vec!["visitor", "delete", EMAIL, "--client", "nope", "--yes"], "no client 'nope'"),
        (vec!["visitor", "delete", EMAIL], "run again with --yes"),
    ] {
        let out = app.cli(&args);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(why),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(app.state.store.session_by_id(scene.session).await.unwrap().is_some(), "nothing deleted without --yes");

    let out = app.cli(&["visitor", "delete", &EMAIL.to_uppercase(), "--client", "demo", "--yes"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let chatwoot = scene.chatwoot.conversations().into_iter().next().unwrap();
    let card_url = export["upstream"]["trelloCards"][0]["url"].as_str().unwrap();
    for part in [
        "deleted 1 conversation(s)",
        &scene.conversation,
        "sessions 1",
        "operator_outbox 1",
        "tasks 1",
        &format!("Chatwoot conversation {}", chatwoot.id),
        card_url,
    ] {
        assert!(printed.contains(part), "{part} in {printed}");
    }
    assert!(!printed.contains(CANARY), "the listing names, never quotes: {printed}");
    check_erased(&app, &scene, &db).await;
    // The server learns it when the visitor next writes: the socket ends the same way.
    scene.ws.send(json!({"type": "message", "id": "v3", "text": "still there?"})).await;
    check_socket_ended(&mut scene.ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_retention_deletes_exactly_what_is_due() {
    use aia_chat::ids::{now_ms, token_hash};
    use aia_chat::store::{HandoffState, NewMessage, NewTaskRecord, OperatorLink, Role, TaskState};

    let app = TestApp::spawn_with(|s| s.retention_interval = Duration::from_millis(200)).await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    assert_eq!(admin.call(Method::POST, "/api/admin/clients", json!({"uid": "other"})).await.0, 201);
    let store = app.state.store.clone();
    let demo = store.client_get("demo").await.unwrap().unwrap().id;
    let other = store.client_get("other").await.unwrap().unwrap().id;
    let day = 86_400_000;
    let now = now_ms();
    let message = |session: i64, id: &str, role: Role, reply_to: Option<i64>, at: i64| NewMessage {
        session_id: session,
        role,
        text: format!("{CANARY} {id}"),
        client_msg_id: (role == Role::Visitor).then(|| id.to_string()),
        reply_to,
        source: None,
        entry_id: None,
        created_at: at,
        usage: None,
        author: None,
        attachments: Vec::new(),
        products: Vec::new(),
    };
    // Sessions of 40 days ago: one silent since, one that spoke yesterday; one of today; and
    // one of another client without retention.
    let token = |conversation: &str| format!("{conversation}-token-0123456789abcdef");
    let mut sessions = Vec::new();
    for (client, conversation, last) in [
        (demo, "c_old-visitor", now - 40 * day),
        (demo, "c_spoke-visitor", now - day),
        (demo, "c_new-visitor", now),
        (other, "c_other-visitor", now - 40 * day),
    ] {
        let started = if conversation == "c_new-visitor" { now } else { now - 40 * day };
        let s = store.session_create(client, &token_hash(&token(conversation)), conversation, started).await.unwrap();
        let q = match store.message_insert(&message(s.id, "q", Role::Visitor, None, started)).await.unwrap() {
            aia_chat::store::Inserted::New(m) => m.seq,
            other => panic!("{other:?}"),
        };
        store.message_insert(&message(s.id, "a", Role::Assistant, Some(q), last)).await.unwrap();
        let link = OperatorLink {
            session_id: s.id,
            client_id: client,
            source_id: format!("aia-r-{}", s.id),
            contact_id: Some(3),
            conversation_id: Some(900 + s.id),
            state: HandoffState::Bot,
            handoffs: 1,
            updated_at: started,
        };
        store.operator_link_save(&link).await.unwrap();
        store.outbox_push(client, s.id, "message", &format!("{{\"text\":\"{CANARY}\"}}"), started).await.unwrap();
        let task = NewTaskRecord {
            client_id: client,
            session_id: s.id,
            marker: format!("aia-task:r:{}", s.id),
            category: None,
            title: "Callback".into(),
            summary: CANARY.into(),
            contact: None,
            page: None,
            state: TaskState::Declined,
            now: started,
        };
        store.task_insert(&task).await.unwrap();
        sessions.push(s);
    }
    // The old visitor is still connected (tab left open): retention ends the socket too.
    let (mut ws, welcome) = app.visitor(Some(&token("c_old-visitor"))).await;
    assert_eq!(welcome["resumed"], true);

    let (status, view) =
        admin.call(Method::PATCH, "/api/admin/clients/demo", json!({"settings": {"retention_days": "30"}})).await;
    assert_eq!(status, 200, "{view}");
    check_socket_ended(&mut ws).await;
    let old = &sessions[0];
    eventually("the old conversation erased", async || {
        store.session_by_id(old.id).await.unwrap().is_none().then_some(())
    })
    .await;
    assert!(store.messages_page(old.id, None, 10).await.unwrap().0.is_empty());
    assert!(store.outbox_of_session(old.id).await.unwrap().is_empty());
    assert!(store.tasks_of_session(old.id).await.unwrap().is_empty());
    assert!(store.operator_link(old.id).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(600)).await;
    for kept in &sessions[1..] {
        assert!(store.session_by_id(kept.id).await.unwrap().is_some(), "{} kept", kept.conversation_id);
        assert_eq!(store.messages_page(kept.id, None, 10).await.unwrap().0.len(), 2);
        assert_eq!(store.outbox_of_session(kept.id).await.unwrap().len(), 1);
        assert_eq!(store.tasks_of_session(kept.id).await.unwrap().len(), 1);
        assert!(store.operator_link(kept.id).await.unwrap().is_some());
    }
    let db = Db::of(&app, None);
    assert_eq!(db.columns_containing(&format!("{CANARY} q")).await.len(), 1, "messages.text of the kept ones");
}
