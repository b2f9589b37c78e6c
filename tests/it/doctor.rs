//! `aia-chat doctor UID`: the real binary against a client configured with every integration
//! pointed at the fakes of the earlier issues — healthy, then each integration broken the way
//! it breaks in life — with the exact lines people read, the JSON programs read, the exit
//! codes, and never a secret in either.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::catalog_fake::FakeCatalog;
use crate::chatwoot_fake::{ACCOUNT_ID, ADMIN_TOKEN, BOT_TOKEN, FakeChatwoot, INBOX_ID, INBOX_SECRET, WEBHOOK_URL};
use crate::embeddings_fake::FakeEmbeddings;
use crate::graphql_fake::{FakeShop, hotel_faqs};
use crate::model_fake::{FakeModel, error, text_stream};
use crate::trello_fake::{self, FakeTrello};

const UID: &str = "shop";
const MODEL_TOKEN: &str = "sk-doctor-canary-8c1f0a2b3d4e";
const SHOP_TOKEN: &str = "shop-token-doctor-Qw7Zp3";
const EMBEDDING_TOKEN: &str = "emb-token-doctor-Lk4Rt8";
const PAGED: &str = "query Faq($pageSize: Int!, $currentPage: Int!) { faqs(pageSize: $pageSize, currentPage: $currentPage) { items { id question answer } page_info { total_pages } } }";
/// This server's public URL as the fake Chatwoot's inbox knows it ([`WEBHOOK_URL`]).
const PUBLIC_URL: &str = "https://assistant.example";

/// A data directory with client [`UID`] and a fake for each of its integrations.
struct Shop {
    dir: tempfile::TempDir,
    model: FakeModel,
    graphql: FakeShop,
    catalog: FakeCatalog,
    embeddings: FakeEmbeddings,
    chatwoot: FakeChatwoot,
    trello: FakeTrello,
}

/// Every secret the shop's settings hold (and the wrong ones the tests plant).
const SECRETS: &[&str] = &[
    MODEL_TOKEN,
    SHOP_TOKEN,
    EMBEDDING_TOKEN,
    ADMIN_TOKEN,
    BOT_TOKEN,
    INBOX_SECRET,
    trello_fake::KEY,
    trello_fake::TOKEN,
    "sk-wrong-model-token-5521",
    "emb-wrong-token-7730",
    "not-a-valid-token-9942",
    "ATTAwrong-trello-token-000000000000000",
];

fn set(dir: &Path, pairs: &[String]) {
    let args: Vec<&str> = ["client", "set", UID].into_iter().chain(pairs.iter().map(String::as_str)).collect();
    let out = crate::support::cli(dir, &args);
    assert!(out.status.success(), "client set: {}", String::from_utf8_lossy(&out.stderr));
}

impl Shop {
    /// Every integration configured and working.
    async fn healthy() -> Shop {
        let shop = Shop {
            dir: tempfile::tempdir().unwrap(),
            model: FakeModel::start(vec![text_stream(Duration::ZERO)]).await,
            graphql: FakeShop::start(hotel_faqs(5)).await,
            catalog: FakeCatalog::start().await,
            embeddings: FakeEmbeddings::start_with_token(EMBEDDING_TOKEN).await,
            chatwoot: FakeChatwoot::start().await,
            trello: FakeTrello::start().await,
        };
        *shop.graphql.shop.token.lock().unwrap() = Some(SHOP_TOKEN.into());
        let out = crate::support::cli(shop.dir.path(), &["client", "add", UID]);
        assert!(out.status.success(), "client add: {}", String::from_utf8_lossy(&out.stderr));
        let mut pairs = vec![
            format!("model_url={}", shop.model.base()),
            format!("model_token={MODEL_TOKEN}"),
            format!("graphql_url={}", shop.graphql.url("/graphql")),
            format!("graphql_query={PAGED}"),
            "chunk_size=2".into(),
            format!(r#"graphql_headers={{"Authorization": "Bearer {SHOP_TOKEN}"}}"#),
            format!("embedding_url={}", shop.embeddings.url()),
            format!("embedding_token={EMBEDDING_TOKEN}"),
            format!("trello_label_ids={},{}", trello_fake::LABEL_BUG, trello_fake::LABEL_CALLBACK),
        ];
        pairs.extend(shop.catalog.client_settings());
        pairs.extend(shop.chatwoot.client_settings());
        pairs.extend(shop.trello.client_settings());
        set(shop.dir.path(), &pairs);
        shop
    }

    fn set(&self, pairs: &[String]) {
        set(self.dir.path(), pairs)
    }

    /// `aia-chat doctor` with `args` and `env`: (exit code, stdout, stderr), checked for secrets.
    async fn doctor(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        doctor(self.dir.path(), args, env).await
    }

    /// `doctor shop` against this server's public URL.
    async fn human(&self) -> (i32, String) {
        let (code, out, err) = self.doctor(&[UID, "--public-url", PUBLIC_URL], &[]).await;
        assert_eq!(err, "", "nothing on stderr");
        (code, out)
    }

    /// `doctor shop --json`, parsed.
    async fn json(&self) -> (i32, Value) {
        let (code, out, err) = self.doctor(&[UID, "--json", "--public-url", PUBLIC_URL], &[]).await;
        assert_eq!(err, "", "nothing on stderr");
        (code, serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}")))
    }

    fn db(&self) -> String {
        self.dir.path().join("aia-chat.db").display().to_string()
    }
}

async fn doctor(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"));
    command
        .arg("doctor")
        .args(args)
        .env("AIA_DATA_DIR", dir)
        .env_remove("AIA_SECRET_KEY")
        .env_remove("AIA_DATABASE_URL")
        .env_remove("AIA_PUBLIC_URL")
        .env_remove("AIA_EMBEDDING_MODEL");
    for (k, v) in env {
        command.env(k, v);
    }
    // The fakes answer on this test's runtime while the binary runs.
    let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let (stdout, stderr) = (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap());
    for secret in SECRETS {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "a secret was printed:\n{stdout}\n{stderr}");
    }
    (out.status.code().expect("exited"), stdout, stderr)
}

/// The lines of `text` from the one starting with `start` up to the next check (or the end).
fn block<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(start));
    let first = lines.next().unwrap_or_else(|| panic!("no block {start:?} in:\n{text}"));
    std::iter::once(first).chain(lines.take_while(|l| l.starts_with("      "))).collect()
}

/// The database block of a healthy shop, with the key's fingerprint and the schema the JSON gave.
fn database_block(shop: &Shop, json: &Value) -> Vec<String> {
    let d = &json["checks"][0]["details"];
    let (fingerprint, schema) = (d["fingerprint"].as_str().unwrap(), d["schema"].as_i64().unwrap());
    assert_eq!(d["schema_known"].as_i64(), Some(schema), "{json:#}");
    vec![
        "ok    database: The database opens, its schema is current and the server key matches it.".into(),
        format!("      database: SQLite {}", shop.db()),
        format!("      schema: migration {schema} of {schema}"),
        format!(
            "      key: fingerprint {fingerprint} from {}, the database's",
            shop.dir.path().join("secret.key").display()
        ),
        "      secrets: 8 set, 8 decrypt".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_a_healthy_client_check_by_check() {
    let shop = Shop::healthy().await;
    let (code, json) = shop.json().await;
    assert_eq!(code, 0, "{json:#}");
    assert_eq!((json["client"].as_str(), json["ok"].as_bool()), (Some(UID), Some(true)));
    let checks = json["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["integration"].as_str().unwrap()).collect();
    assert_eq!(names, ["database", "model", "graphql", "catalog", "embeddings", "operator", "tasks"]);
    assert!(checks.iter().all(|c| c["ok"] == true && c.get("skipped").is_none() && c.get("problem").is_none()));
    assert_eq!(checks[2]["details"]["fields"]["list"], "faqs.items");
    assert_eq!(checks[5]["details"]["webhook_url_check"], format!("{WEBHOOK_URL} (this server)"));

    let (code, out) = shop.human().await;
    assert_eq!(code, 0, "{out}");
    let mut expected = database_block(&shop, &json);
    expected.extend(
        [
            "ok    model: The model gpt-4o-mini answered.",
            "      reply: Yes, we do.",
            "ok    graphql (training source): The first page gave 2 entries (page 1 of 3).",
            "      maps (found automatically): 2 items of faqs.items; question ← faqs.items[].question, answer ← faqs.items[].answer, id ← faqs.items[].id",
            "      paging: $pageSize/$currentPage, 2 a page",
            "      first entry: Is there a sauna at the hotel? → Yes, the sauna is available daily. (entry 0)",
        ]
        .map(String::from),
    );
    let product = |name: &str, key: &str| format!("      product: {name} ({})", shop.catalog.product_url(key));
    expected.extend([
        "ok    catalog: The catalog answered: 4 products for \"lamp\".".into(),
        product("Arc Floor Lamp", "arc-floor-lamp"),
        product("Desk Lamp Brass", "desk-lamp-brass"),
        product("Bedside Lamp Linen", "bedside-lamp-linen"),
    ]);
    expected.extend([
        format!("ok    embeddings: Embeddings work: 64 dimensions from {}.", checks[4]["details"]["space"].as_str().unwrap()),
        format!("ok    operator (Chatwoot): Chatwoot answered: account {ACCOUNT_ID}, API inbox \"AI assistant\" ({INBOX_ID})."),
        format!("      account {ACCOUNT_ID} (operator_account_id)"),
        "      webhook secret: operator_webhook_secret is set".into(),
        format!("      webhook URL: {WEBHOOK_URL} (this server)"),
        "ok    tasks (Trello): The board answered: 2 open lists, 6 labels.".into(),
        format!("      new cards go to the list \"Inbox\" ({})", trello_fake::LIST_INBOX),
        "      default labels: \"Bug\", \"Callback\"".into(),
        "shop: nothing failed (7 ok, 0 skipped).".into(),
    ]);
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");
}

/// A loopback port nothing listens on.
async fn dead_port() -> u16 {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port()
}

/// The `FAIL` block of `name` in `out`: its summary, where, what and fix lines.
fn failure(name: &str, summary: &str, place: &str, what: &str, fix: &str) -> Vec<String> {
    vec![
        format!("FAIL  {name}: {summary}"),
        format!("      where: {place}"),
        format!("      what:  {what}"),
        format!("      fix:   {fix}"),
    ]
}

/// The blocks of `names` in `out`, one after the other.
fn blocks(out: &str, names: &[&str]) -> Vec<String> {
    names.iter().flat_map(|n| block(out, n)).map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_what_is_wrong_and_what_to_change() {
    let shop = Shop::healthy().await;
    let refusing = FakeModel::start(vec![error(401)]).await;
    let (dead_catalog, dead_model) = (dead_port().await, dead_port().await);
    let chatwoot = shop.chatwoot.base();
    let trello = shop.trello.base();
    let graphql = shop.graphql.url("/graphql");
    const OPENAI_401: &str = "Incorrect API key provided: sk-test***0000. You can find your API key at https://platform.openai.com/account/api-keys.";
    const UNKNOWN_ID: &str = "0123456789abcdef01234567";

    // Each integration broken once, the way it breaks in life: refused tokens, a query the
    // store refuses, a catalog nobody listens for.
    shop.set(&[
        format!("model_url={}", refusing.base()),
        "model_token=sk-wrong-model-token-5521".into(),
        "graphql_query=query { faq { colour } }".into(),
        format!("product_graphql_url=http://127.0.0.1:{dead_catalog}/graphql"),
        "embedding_token=emb-wrong-token-7730".into(),
        "operator_token=not-a-valid-token-9942".into(),
        "trello_token=ATTAwrong-trello-token-000000000000000".into(),
    ]);
    let (code, out) = shop.human().await;
    assert_eq!(code, 1, "{out}");
    let mut expected: Vec<String> = Vec::new();
    expected.extend(failure(
        "model",
        "The model did not answer.",
        &format!("model API ({})", refusing.base()),
        &format!("the model server refused the credentials (HTTP 401): {OPENAI_401}"),
        "Check model_url, model_token and model_type (the model id the provider expects).",
    ));
    expected.extend(failure(
        "graphql (training source)",
        "The GraphQL query was refused.",
        &format!("GraphQL source ({graphql})"),
        "page 1: GraphQL errors: Unknown field \"colour\" on type \"Faq\".",
        "Correct graphql_query where the message says (try it in the store's GraphQL playground first).",
    ));
    expected.extend(failure(
        "catalog",
        "The catalog search failed.",
        &format!("product catalog (http://127.0.0.1:{dead_catalog}/graphql)"),
        "the store is unavailable: error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
        "Check product_graphql_url, product_query and product_headers.",
    ));
    expected.extend(failure(
        "embeddings",
        "The embeddings API did not answer.",
        &format!("embeddings API ({})", shop.embeddings.url()),
        &format!("embeddings endpoint: HTTP 401: {OPENAI_401}"),
        "Check embedding_url, embedding_model and embedding_token.",
    ));
    expected.extend(failure(
        "operator (Chatwoot)",
        "Chatwoot refused the access token for this account.",
        &format!("Chatwoot ({chatwoot}), account {ACCOUNT_ID}, inbox {INBOX_ID}"),
        "Chatwoot refused the access token: Invalid Access Token",
        &format!(
            "Check operator_token (an administrator's access token: Profile settings → Access token) and that its \
             user belongs to account {ACCOUNT_ID} (operator_account_id)."
        ),
    ));
    expected.extend(failure(
        "tasks (Trello)",
        "Trello refused the key or the token.",
        &format!("Trello ({trello})"),
        "Trello credentials invalid or no access: invalid token",
        &format!(
            "Check trello_key and trello_token (it needs read and write access, and its user must see the board {}).",
            trello_fake::BOARD_ID
        ),
    ));
    expected.push("shop: 6 failed (model, graphql, catalog, embeddings, operator, tasks); 1 ok, 0 skipped.".into());
    let shown: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("FAIL")).collect();
    assert_eq!(shown, expected, "{out}");
    assert!(out.starts_with("ok    database: "), "{out}");

    // The JSON says the same.
    let (code, json) = shop.json().await;
    assert_eq!((code, json["ok"].as_bool()), (1, Some(false)), "{json:#}");
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 7);
    for (check, lines) in checks[1..].iter().zip(expected.chunks(4)) {
        let p = &check["problem"];
        assert_eq!(
            (check["ok"].as_bool(), check["summary"].as_str()),
            (Some(false), lines[0].split_once(": ").map(|x| x.1))
        );
        let fields = [&p["where"], &p["what"], &p["fix"]].map(|v| v.as_str().unwrap().to_string());
        assert_eq!(fields.to_vec(), lines[1..].iter().map(|l| l[13..].to_string()).collect::<Vec<_>>(), "{check:#}");
    }

    // The next breakage of each: a model server that is gone, a token the store refuses, an
    // inbox of another account, a board that does not exist.
    shop.set(&[
        format!("model_url=http://127.0.0.1:{dead_model}/v1"),
        format!("model_token={MODEL_TOKEN}"),
        format!("graphql_query={PAGED}"),
        r#"graphql_headers={"Authorization": "Bearer not-a-valid-token-9942"}"#.into(),
        format!("operator_token={ADMIN_TOKEN}"),
        "operator_inbox_id=9".into(),
        format!("trello_token={}", trello_fake::TOKEN),
        format!("trello_board_id={UNKNOWN_ID}"),
    ]);
    let (code, out) = shop.human().await;
    assert_eq!(code, 1, "{out}");
    let mut expected = failure(
        "model",
        "The model did not answer.",
        &format!("model API (http://127.0.0.1:{dead_model}/v1)"),
        "could not reach the model server: error sending request: client error (Connect)",
        "Check model_url, model_token and model_type (the model id the provider expects).",
    );
    expected.extend(failure(
        "graphql (training source)",
        "The GraphQL source refused the credentials.",
        &format!("GraphQL source ({graphql})"),
        "page 1: GraphQL errors (HTTP 401: the store refused the credentials in graphql_headers): The request is allowed for logged in customer",
        "Check graphql_headers (e.g. {\"Authorization\": \"Bearer …\"}): the token may be wrong, expired, or not allowed to read this data.",
    ));
    expected.extend(failure(
        "operator (Chatwoot)",
        "Chatwoot has no such inbox in this account.",
        &format!("Chatwoot ({chatwoot}), account {ACCOUNT_ID}, inbox 9"),
        "Chatwoot has no such record (HTTP 404)",
        &format!(
            "Check operator_inbox_id (the number after /inboxes/ in the inbox's settings address) and the account \
             {ACCOUNT_ID} (operator_account_id): the inbox 9 must belong to it."
        ),
    ));
    expected.extend(failure(
        "tasks (Trello)",
        &format!("Trello has no board {UNKNOWN_ID}."),
        &format!("Trello ({trello})"),
        "Trello has no such board or list: The requested resource was not found.",
        "Check trello_board_id: the board's id, or the 8 characters after /b/ in its address.",
    ));
    assert_eq!(blocks(&out, &["FAIL  model", "FAIL  graphql", "FAIL  operator", "FAIL  tasks"]), expected, "{out}");

    // The inbox posts its webhooks to another server; the list for new cards is not on the board.
    shop.set(&[
        format!("operator_inbox_id={INBOX_ID}"),
        format!("trello_board_id={}", trello_fake::BOARD_ID),
        format!("trello_list_id={UNKNOWN_ID}"),
    ]);
    let elsewhere = "https://old-assistant.example/api/webhook";
    shop.chatwoot.set_inbox_webhook_url(INBOX_ID, Some(elsewhere));
    let board = [
        format!("      list \"Inbox\": {}", trello_fake::LIST_INBOX),
        format!("      list \"In progress\": {}", trello_fake::LIST_IN_PROGRESS),
        format!("      label \"Bug\" (red): {}", trello_fake::LABEL_BUG),
        format!("      label \"Complaint\" (orange): {}", trello_fake::LABEL_COMPLAINT),
        format!("      label \"Callback\" (sky_dark): {}", trello_fake::LABEL_CALLBACK),
        format!("      label \"Quote\" (green): {}", trello_fake::LABEL_QUOTE),
        format!("      label \"Return\": {}", trello_fake::LABEL_RETURN),
        format!("      label \"\" (purple): {}", trello_fake::LABEL_COLOR_ONLY),
    ];
    let (code, out) = shop.human().await;
    assert_eq!(code, 1, "{out}");
    let mut expected = failure(
        "operator (Chatwoot)",
        "Chatwoot answered, but the inbox sends its webhooks elsewhere: agents' replies would not arrive.",
        &format!("Chatwoot inbox {INBOX_ID} (AI assistant), its webhook URL"),
        &format!("the inbox's webhook URL is {elsewhere}, not this server's {PUBLIC_URL}/api/webhook/{UID}"),
        &format!(
            "Set the webhook URL of the inbox in Chatwoot (Settings → Inboxes → AI assistant → Configuration) to \
             {PUBLIC_URL}/api/webhook/{UID}, or correct --public-url (AIA_PUBLIC_URL) if {elsewhere} is this server too."
        ),
    );
    expected.extend(failure(
        "tasks (Trello)",
        "The board answered, but the list for new cards is not on it.",
        "trello_list_id",
        &format!("no open list of the board has the id {UNKNOWN_ID}"),
        "Pick one of the board's lists below.",
    ));
    expected.extend(board.clone());
    assert_eq!(blocks(&out, &["FAIL  operator", "FAIL  tasks"]), expected, "{out}");
    // Without this server's public URL the webhook URL cannot be compared, and the doctor says so.
    let (_, out, _) = shop.doctor(&[UID], &[]).await;
    assert_eq!(
        block(&out, "ok    operator"),
        [
            format!(
                "ok    operator (Chatwoot): Chatwoot answered: account {ACCOUNT_ID}, API inbox \"AI assistant\" ({INBOX_ID})."
            ),
            format!("      account {ACCOUNT_ID} (operator_account_id)"),
            "      webhook secret: operator_webhook_secret is set".into(),
            format!(
                "      webhook URL: {elsewhere} (not compared with this server's address: its public URL is unknown; give --public-url or AIA_PUBLIC_URL)"
            ),
        ],
        "{out}"
    );
    // AIA_PUBLIC_URL, as the server reads it, is the doctor's too.
    let (_, out, _) = shop.doctor(&[UID], &[("AIA_PUBLIC_URL", PUBLIC_URL)]).await;
    assert!(
        out.contains("\nFAIL  operator (Chatwoot): Chatwoot answered, but the inbox sends its webhooks elsewhere"),
        "{out}"
    );

    // No webhook URL at all; a default label that is not on the board.
    shop.set(&[
        format!("trello_list_id={}", trello_fake::LIST_INBOX),
        format!("trello_label_ids={},0123456789abcdef0123abcd", trello_fake::LABEL_BUG),
    ]);
    shop.chatwoot.set_inbox_webhook_url(INBOX_ID, None);
    let (code, out) = shop.human().await;
    assert_eq!(code, 1, "{out}");
    let mut expected = failure(
        "operator (Chatwoot)",
        "Chatwoot answered, but the inbox calls no webhook: agents' replies would never arrive.",
        &format!("Chatwoot inbox {INBOX_ID} (AI assistant), its webhook URL"),
        "the inbox has no webhook URL",
        &format!(
            "Set the webhook URL of the inbox in Chatwoot (Settings → Inboxes → AI assistant → Configuration) to \
             {PUBLIC_URL}/api/webhook/{UID}, or set operator_cable=on if Chatwoot cannot reach this server."
        ),
    );
    expected.extend(failure(
        "tasks (Trello)",
        "The board answered, but some default labels are not on it.",
        "trello_label_ids",
        "unknown label ids: 0123456789abcdef0123abcd",
        "Remove them or pick labels from the board's list below.",
    ));
    expected.extend(board);
    assert_eq!(blocks(&out, &["FAIL  operator", "FAIL  tasks"]), expected, "{out}");
    // Replies over ActionCable need no webhook.
    shop.set(&["operator_cable=on".into()]);
    let (_, out) = shop.human().await;
    assert_eq!(
        block(&out, "ok    operator")[3],
        "      webhook URL: not used: agents' replies come over ActionCable (operator_cable=on)",
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_skips_what_is_not_configured_and_fails_what_is_half_configured() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::cli(dir.path(), &["client", "add", "fresh"]);
    assert!(out.status.success());
    let (code, out, err) = doctor(dir.path(), &["fresh"], &[]).await;
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    let rest: Vec<&str> = out.lines().skip(5).collect();
    assert_eq!(
        rest,
        [
            "skip  model: not configured",
            "skip  graphql (training source): not configured",
            "skip  catalog: not configured",
            "skip  embeddings: not configured",
            "skip  operator (Chatwoot): not configured",
            "skip  tasks (Trello): not configured",
            "fresh: nothing failed (1 ok, 6 skipped).",
        ],
        "{out}"
    );
    assert_eq!(out.lines().nth(4), Some("      secrets: 0 set, 0 decrypt"), "{out}");

    let out = crate::support::cli(dir.path(), &["client", "set", "fresh", "operator_url=http://127.0.0.1:9"]);
    assert!(out.status.success());
    let (code, out, _) = doctor(dir.path(), &["fresh", "--json"], &[]).await;
    assert_eq!(code, 1, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["ok"], false);
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(
        (checks[1]["ok"].as_bool(), checks[1]["skipped"].as_bool(), checks[1]["summary"].as_str()),
        (
            Some(true),
            Some(true),
            Some("No model is configured: the assistant answers from the knowledge base on its own.")
        )
    );
    let operator = &checks[5];
    assert_eq!((operator["ok"].as_bool(), operator.get("skipped")), (Some(false), None), "{operator:#}");
    assert_eq!(operator["problem"]["what"], "operator_token, operator_inbox_id are empty");
    assert_eq!(operator["problem"]["where"], "Operator (Chatwoot) settings");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_the_database_and_its_key_first() {
    let shop = Shop::healthy().await;
    let dir = shop.dir.path();
    let key_file = dir.join("secret.key");
    let ours = aia_chat::clients::SecretBox::load(dir).unwrap().unwrap();
    let ours = ours.fingerprint();
    let other_key = "00".repeat(32);
    let other = aia_chat::clients::SecretBox::from_text(&other_key).unwrap();
    let last = |uid: &str| format!("{uid}: the database check failed; the integrations need it and were not checked.");

    // Another server's key: nothing sealed can be opened, and the doctor stops there.
    let (code, out, err) = shop.doctor(&[UID], &[("AIA_SECRET_KEY", &other_key)]).await;
    assert_eq!((code, err.as_str()), (1, ""), "{out}");
    let mut expected = failure(
        "database",
        "The server key is not the one this database was created with: no stored secret can be read.",
        "server key (AIA_SECRET_KEY)",
        &format!("the key at hand has fingerprint {}; the database's has fingerprint {ours}", other.fingerprint()),
        &format!(
            "Give the original key (fingerprint {ours}) in AIA_SECRET_KEY or {}; backups never hold it.",
            key_file.display()
        ),
    );
    expected.push(last(UID));
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");

    // A secret moved to another setting no longer opens (it is sealed to its own); the check
    // that needs it says so too.
    let conn = rusqlite::Connection::open(shop.db()).unwrap();
    conn.execute(
        "UPDATE client_settings SET value = (SELECT value FROM client_settings WHERE key = 'model_token') \
         WHERE key = 'trello_token'",
        [],
    )
    .unwrap();
    drop(conn);
    let (code, out) = shop.human().await;
    assert_eq!(code, 1, "{out}");
    let mut expected = failure(
        "database",
        "Some of the client's secrets cannot be decrypted with the server key.",
        &format!("settings of client {UID}"),
        "trello_token cannot be decrypted",
        &format!(
            "Set trello_token again (aia-chat client set {UID} trello_token=…, or in the admin panel): a secret opens \
             only under the setting and the client it was stored for."
        ),
    );
    expected.extend([
        format!("      database: SQLite {}", shop.db()),
        format!("      schema: migration {0} of {0}", aia_chat::store::known_schema_version()),
        format!("      key: fingerprint {ours} from {}, the database's", key_file.display()),
        "      secrets: 8 set, 7 decrypt".into(),
    ]);
    assert_eq!(block(&out, "FAIL  database"), expected, "{out}");
    assert_eq!(
        block(&out, "FAIL  tasks"),
        failure(
            "tasks (Trello)",
            "The task settings cannot be used.",
            "Tasks (Trello) settings",
            "trello_token: a stored secret could not be decrypted",
            "Correct the Trello settings.",
        ),
        "{out}"
    );
    assert_eq!(out.lines().last(), Some("shop: 2 failed (database, tasks); 5 ok, 0 skipped."), "{out}");

    // No key at all: the doctor never makes one up.
    std::fs::remove_file(&key_file).unwrap();
    let (code, out, _) = shop.doctor(&[UID], &[]).await;
    assert_eq!(code, 1, "{out}");
    let mut expected = failure(
        "database",
        "The server key is missing: no stored secret can be read.",
        &format!("server key ({})", key_file.display()),
        &format!("AIA_SECRET_KEY is not set and {} does not exist", key_file.display()),
        &format!(
            "Give the server's key in AIA_SECRET_KEY or in {}: 32 bytes as 64 hex characters (a new one opens none \
             of the stored secrets).",
            key_file.display()
        ),
    );
    expected.push(last(UID));
    assert_eq!(out.lines().collect::<Vec<_>>(), expected, "{out}");
    assert!(!key_file.exists(), "no key was created");

    // No database: said so, and nothing created.
    let empty = tempfile::tempdir().unwrap();
    let db = empty.path().join("aia-chat.db");
    let (code, out, _) = doctor(empty.path(), &["--json", UID], &[]).await;
    assert_eq!(code, 1, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((json["client"].as_str(), json["ok"].as_bool()), (Some(UID), Some(false)));
    assert_eq!(json["checks"].as_array().unwrap().len(), 1, "{json:#}");
    let check = &json["checks"][0];
    assert_eq!(
        (check["integration"].as_str(), check["summary"].as_str()),
        (Some("database"), Some("There is no database here."))
    );
    assert_eq!(check["problem"]["where"], format!("database ({})", db.display()));
    assert_eq!(check["problem"]["what"], format!("{} does not exist", db.display()));
    assert_eq!(
        check["problem"]["fix"],
        "Give the server's data directory with --data-dir (AIA_DATA_DIR), or its database with --database-url (AIA_DATABASE_URL)."
    );
    assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0, "the doctor creates nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_refuses_an_unknown_client_as_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(crate::support::cli(dir.path(), &["client", "add", "fresh"]).status.success());
    let (code, out, err) = doctor(dir.path(), &["nobody"], &[]).await;
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (2, "", "error: no client 'nobody' in this database; `aia-chat client list` shows them\n")
    );
    let (code, out, _) = doctor(dir.path(), &["nobody", "--json"], &[]).await;
    assert_eq!((code, out.as_str()), (2, ""));
}
