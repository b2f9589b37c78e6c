//! [scale]: two real nodes (the `aia-chat` binary, each its own process on its own port) on one
//! PostgreSQL database, linked by a Redis server that each test runs for itself (so it can
//! stop and restart it). A visitor's tabs and the Chatwoot webhook land on different nodes as
//! a load balancer would send them.
//!
//! Needs `TEST_DATABASE_URL` and a `redis-server` binary (`scripts/test` provides both);
//! without them the tests say SKIPPED loudly and `scripts/test` fails on the counter.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::chatwoot_fake::{FakeChatwoot, INBOX_SECRET};
use crate::embeddings_fake::FakeEmbeddings;
use crate::graphql_fake::{FakeShop, Faq, hotel_faqs};
use crate::model_fake::{FakeModel, Script, text_stream};
use crate::store::fresh_postgres;
use crate::support::{ADMIN_PASSWORD, AdminSession, Ws, connect_ws, count_run, http, loud_skip, sign_in};

const KEY: &str = "5f1c0a9e3b7d2c4e6a8b0d1f3e5c7a9b1d3f5e7c9a0b2d4f6e8a1c3e5b7d9f0a";
const OTHER_KEY: &str = "0a9f8e7d6c5b4a3928170f6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a2";
const ORIGIN: &str = "http://localhost:8080";

/// A Redis server of the test's own, on a free port, keeping nothing on disk.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Option<Redis> {
        let mut redis = Redis { port: free_port(), child: None };
        redis.up().then_some(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts the server (again, on the same port); `false` when there is no `redis-server`.
    fn up(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Freezes (`true`) or thaws the server: its connections stay open but nothing answers, as
    /// behind a network that drops packets.
    fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([if frozen { "-STOP" } else { "-CONT" }, &pid]).status().unwrap();
        assert!(status.success());
    }

    /// Kills the server (its data is gone, as after a crash of a Redis without persistence).
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.down();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What every node of a test shares.
#[derive(Clone)]
struct Shared {
    database: String,
    redis: String,
}

/// One node: the real binary, logging to a file the test can read.
struct Node {
    addr: SocketAddr,
    base: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node and waits until it is ready.
    async fn start(shared: &Shared, env: &[(&str, &str)]) -> Node {
        match Node::spawn(shared, KEY, env) {
            Ok(mut node) => {
                node.ready().await;
                node
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn spawn(shared: &Shared, key: &str, env: &[(&str, &str)]) -> Result<Node, String> {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = crate::support::log_path("cluster-node");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aia-chat"));
        cmd.arg("serve")
            .env("AIA_ADDR", addr.to_string())
            .env("AIA_DATA_DIR", dir.path())
            .env("AIA_DATABASE_URL", &shared.database)
            .env("AIA_REDIS_URL", &shared.redis)
            .env("AIA_SECRET_KEY", key)
            .env("AIA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("AIA_SHUTDOWN_GRACE", "2s")
            .env("AIA_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| format!("starting aia-chat: {e}"))?;
        Ok(Node { addr, base: format!("http://{addr}"), child, log, _dir: dir })
    }

    async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http().get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the node exited ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "the node was not ready within 60 s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no draining, no lease released, claims left to run out.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn socket(&self) -> Ws {
        connect_ws(&format!("ws://{}/ws?clientUid=demo", self.addr), Some(ORIGIN)).await.expect("demo socket")
    }

    /// A visitor's tab on this node: (socket, welcome).
    async fn visitor(&self, session: Option<&str>) -> (Ws, Value) {
        let mut ws = self.socket().await;
        let welcome = ws.hello(session).await;
        (ws, welcome)
    }

    async fn admin(&self) -> AdminSession {
        sign_in(&self.base, "admin", ADMIN_PASSWORD).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- log of the node on {} ----\n{}", self.addr, self.log());
        }
    }
}

/// PostgreSQL and a Redis of the test's own, or a loud skip.
async fn cluster_parts() -> Option<(Shared, Redis)> {
    let Some(database) = fresh_postgres().await else {
        loud_skip("cluster", "TEST_DATABASE_URL is not set");
        return None;
    };
    let Some(redis) = Redis::start() else {
        loud_skip("cluster", "redis-server is not installed");
        return None;
    };
    count_run("CLUSTER_TESTS_RUN", 1);
    Some((Shared { database, redis: redis.url() }, redis))
}

/// `aia-chat client set demo …` against the cluster's database.
fn client_set(shared: &Shared, pairs: &[String]) {
    let out = Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["client", "set", "demo"])
        .args(pairs)
        .env("AIA_DATABASE_URL", &shared.database)
        .env("AIA_SECRET_KEY", KEY)
        .output()
        .unwrap();
    assert!(out.status.success(), "client set: {}", String::from_utf8_lossy(&out.stderr));
}

/// Lets every running node load what `client set` wrote (they look every 500 ms).
async fn settled() {
    tokio::time::sleep(Duration::from_millis(1200)).await;
}

/// Waits (up to `limit`) until `ok` gives something.
async fn eventually<T>(limit: Duration, what: &str, mut ok: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = ok().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next `message` frame's message.
async fn next_message(ws: &mut Ws) -> Value {
    ws.next_of("message").await["message"].clone()
}

/// Who holds each job's lease, from the database itself.
async fn lease_holders(database: &str) -> Vec<(String, String)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(database).await.unwrap();
    let now = aia_chat::ids::now_ms();
    sqlx::query_as::<_, (String, String)>("SELECT name, owner FROM job_leases WHERE until > $1 ORDER BY name")
        .bind(now)
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// The node name a log's "aia-chat is ready" line gives.
fn node_name(log: &str) -> String {
    let line = log.lines().find(|l| l.contains("aia-chat is ready")).expect("a ready line");
    let at = line.find("node=").expect("node= in the ready line") + 5;
    line[at..].split_whitespace().next().unwrap().trim_matches('"').to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reply_through_b_reaches_the_visitor_on_a_and_the_outbox_runs_once() {
    let Some((shared, _redis)) = cluster_parts().await else { return };
    let fake = FakeChatwoot::start().await;
    let mut a = Node::start(&shared, &[]).await;
    client_set(&shared, &fake.client_settings());
    let mut b = Node::start(&shared, &[]).await;
    settled().await;

    // The visitor is on A and asks for a person; the hand-off goes out once, from whichever
    // node holds the outbox's lease.
    let (mut ws, welcome) = a.visitor(None).await;
    let session = welcome["session"].as_str().unwrap().to_string();
    ws.send(json!({"type": "message", "id": "q1", "text": "Can I talk to a human please?"})).await;
    let told = loop {
        let m = next_message(&mut ws).await;
        if m["role"] == "system" {
            break m;
        }
    };
    assert!(told["text"].as_str().unwrap().contains("person from our team"), "{told}");
    let conversation = eventually(Duration::from_secs(10), "the hand-off at Chatwoot", async || {
        fake.conversations().into_iter().find(|c| c.status == "open")
    })
    .await;

    // The agent answers; Chatwoot's webhook lands on B; the reply shows on A's socket.
    let reply = fake.agent_writes(conversation.id, "Hi, I'm Sam from node B's webhook.");
    let delivered = fake.send_webhook(&format!("{}/api/webhook", b.base), &reply, Some(INBOX_SECRET)).await;
    assert_eq!(delivered.status, Some(200), "{delivered:?}");
    let shown = loop {
        let m = next_message(&mut ws).await;
        if m["role"] == "operator" {
            break m;
        }
    };
    assert_eq!(shown["text"], "Hi, I'm Sam from node B's webhook.");

    // One node holds each job; the conversation was created once.
    let holders = lease_holders(&shared.database).await;
    let names: Vec<&str> = holders.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"operator-outbox"), "{holders:?}");
    let creates = || fake.seen().iter().filter(|s| s.method == "POST" && s.path.ends_with("/conversations")).count();
    assert_eq!(creates(), 1, "the hand-off was delivered once");

    // The outbox's holder dies; the other node takes the lease over and delivers the
    // visitor's next message, once.
    let holder = holders.iter().find(|(n, _)| n == "operator-outbox").unwrap().1.clone();
    let (a_name, b_name) = (node_name(&a.log()), node_name(&b.log()));
    let (dead, alive) = if holder == a_name {
        (&mut a, &b)
    } else {
        assert_eq!(holder, b_name, "the holder is one of the two nodes");
        (&mut b, &a)
    };
    dead.kill();
    drop(ws);
    let (mut ws, welcome) = alive.visitor(Some(&session)).await;
    assert_eq!(welcome["resumed"], true);
    let seen = welcome["history"].as_array().unwrap();
    assert_eq!(seen.iter().filter(|m| m["role"] == "operator").count(), 1, "nothing lost or doubled: {seen:?}");
    ws.send(json!({"type": "message", "id": "q2", "text": "My order 1001 is late."})).await;
    let ack = ws.next_of("ack").await;
    let source = format!("aia-m-{}", ack["seq"]);
    eventually(Duration::from_secs(40), "the message forwarded by the new holder", async || {
        fake.messages(conversation.id).into_iter().find(|m| m.source_id.as_deref() == Some(source.as_str()))
    })
    .await;
    let sent = fake.seen().iter().filter(|s| s.body["source_id"].as_str() == Some(source.as_str())).count();
    assert_eq!(sent, 1, "forwarded once");
    assert_eq!(creates(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_streaming_on_a_reaches_the_visitor_who_moved_to_b() {
    let Some((shared, _redis)) = cluster_parts().await else { return };
    let model = FakeModel::start(vec![text_stream(Duration::from_millis(1500))]).await;
    let a = Node::start(&shared, &[]).await;
    client_set(&shared, &[format!("model_url={}", model.base())]);
    let b = Node::start(&shared, &[]).await;
    settled().await;

    let (mut on_a, welcome) = a.visitor(None).await;
    let session = welcome["session"].as_str().unwrap().to_string();
    on_a.send(json!({"type": "message", "id": "m1", "text": "Do you ship to Austria?"})).await;
    let seq = on_a.next_of("ack").await["seq"].as_i64().unwrap();
    let first = on_a.next_of("delta").await;
    assert_eq!((first["replyTo"].as_i64(), first["text"].as_str()), (Some(seq), Some("Yes, we")));

    // The visitor's network moves them to B mid-answer: the rest streams there from A.
    drop(on_a);
    let (mut on_b, welcome) = b.visitor(Some(&session)).await;
    assert_eq!(welcome["resumed"], true);
    let mut deltas = Vec::new();
    let answer = loop {
        let f = on_b.next().await.expect("B's socket stays open");
        match f["type"].as_str() {
            Some("delta") => deltas.push(f["text"].as_str().unwrap().to_string()),
            Some("message") if f["message"]["replyTo"].as_i64() == Some(seq) => break f["message"].clone(),
            _ => {}
        }
    };
    assert_eq!(deltas, [" do."], "the rest of the stream, from A through Redis");
    assert_eq!((answer["text"].as_str(), answer["source"].as_str()), (Some("Yes, we do."), Some("model")));

    // One answer, not a second one from B.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, again) = b.visitor(Some(&session)).await;
    let replies = again["history"].as_array().unwrap().iter().filter(|m| m["replyTo"].as_i64() == Some(seq)).count();
    assert_eq!(replies, 1, "{again}");
    assert_eq!(model.seen().len(), 1, "the model was asked once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_on_a_makes_b_answer_from_the_new_knowledge_at_once() {
    let Some((shared, _redis)) = cluster_parts().await else { return };
    let mut faqs = hotel_faqs(9);
    faqs.push(Faq {
        id: "f1".into(),
        question: "Do you rent out kayaks?".into(),
        answer: "Yes, kayaks are 20 euros a day at the boathouse.".into(),
    });
    let shop = FakeShop::start(faqs).await;
    const QUERY: &str = "query Faq($pageSize: Int!, $currentPage: Int!) { faqs(pageSize: $pageSize, currentPage: $currentPage) { items { id question answer } page_info { total_pages } } }";
    let a = Node::start(&shared, &[]).await;
    client_set(&shared, &[format!("graphql_url={}", shop.url("/graphql")), format!("graphql_query={QUERY}")]);
    // B looks in the database only once an hour: only Redis can tell it in time.
    let b = Node::start(&shared, &[("AIA_RELOAD_INTERVAL", "1h")]).await;
    let (mut ws, _) = b.visitor(None).await;
    let (_, before) = ws.ask("k1", "Do you rent out kayaks?").await;
    assert_ne!(before["source"], "knowledge", "not known yet: {before}");

    settled().await;
    let admin = a.admin().await;
    let (status, body) = admin.call(reqwest::Method::POST, "/api/admin/clients/demo/training", json!({})).await;
    assert_eq!(status, 202, "{body}");
    let answer = eventually(Duration::from_secs(5), "B answering from the new knowledge", async || {
        tokio::time::sleep(Duration::from_millis(300)).await; // under the message rate limit
        let id = format!("k-{}", rand::random::<u32>());
        ws.send(json!({"type": "message", "id": id, "text": "Do you rent out kayaks?"})).await;
        loop {
            let f = ws.next().await.unwrap();
            if f["type"] == "message" && f["message"]["role"] == "assistant" {
                return (f["message"]["source"] == "knowledge").then(|| f["message"].clone());
            }
        }
    })
    .await;
    assert!(answer["text"].as_str().unwrap().contains("20 euros a day"), "{answer}");
    assert!(b.log().contains("another node changed them"), "B reloaded on A's word:\n{}", b.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_knowledge_is_embedded_once_for_the_whole_cluster() {
    let Some((shared, _redis)) = cluster_parts().await else { return };
    let embeddings = FakeEmbeddings::start().await;
    let shop = FakeShop::start(hotel_faqs(24)).await;
    const QUERY: &str = "query Faq($pageSize: Int!, $currentPage: Int!) { faqs(pageSize: $pageSize, currentPage: $currentPage) { items { id question answer } page_info { total_pages } } }";
    let a = Node::start(&shared, &[]).await;
    client_set(
        &shared,
        &[
            format!("embedding_url={}", embeddings.url()),
            "embedding_model=fake-embed".into(),
            format!("graphql_url={}", shop.url("/graphql")),
            format!("graphql_query={QUERY}"),
        ],
    );
    let b = Node::start(&shared, &[]).await;
    let ready = |node: &Node| node.log().matches("knowledge vectors ready").count();
    eventually(Duration::from_secs(30), "both nodes' vectors", async || {
        (ready(&a) >= 1 && ready(&b) >= 1).then_some(())
    })
    .await;

    // Training on A: both nodes want the new knowledge's vectors at the same moment, from a
    // provider that takes its time.
    settled().await;
    embeddings.set_delay(Duration::from_millis(300));
    let admin = a.admin().await;
    let (status, body) = admin.call(reqwest::Method::POST, "/api/admin/clients/demo/training", json!({})).await;
    assert_eq!(status, 202, "{body}");
    eventually(Duration::from_secs(30), "both nodes' new vectors", async || {
        (ready(&a) >= 2 && ready(&b) >= 2).then_some(())
    })
    .await;
    let inputs: Vec<String> = embeddings.requests().iter().flat_map(|r| r.inputs()).collect();
    let unique: std::collections::HashSet<&String> = inputs.iter().collect();
    assert_eq!(inputs.len(), unique.len(), "every text embedded once for the two nodes");
    assert!(inputs.iter().any(|t| t.contains("sauna")), "the trained knowledge was embedded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_answer_the_visitor_resumes_on_b_and_gets_the_answer_once() {
    let Some((shared, _redis)) = cluster_parts().await else { return };
    // The first question is answered; the second stalls on A, which is then killed; B
    // answers it with the third script.
    let model = FakeModel::start(vec![text_stream(Duration::ZERO), Script::Stall, text_stream(Duration::ZERO)]).await;
    let mut a = Node::start(&shared, &[]).await;
    client_set(&shared, &[format!("model_url={}", model.base())]);
    let b = Node::start(&shared, &[]).await;
    settled().await;

    let (mut ws, welcome) = a.visitor(None).await;
    let session = welcome["session"].as_str().unwrap().to_string();
    let (_, first) = ws.ask("m1", "Do you ship to Austria?").await;
    assert_eq!(first["text"], "Yes, we do.");
    ws.send(json!({"type": "message", "id": "m2", "text": "And to Switzerland?"})).await;
    let seq = ws.next_of("ack").await["seq"].as_i64().unwrap();
    eventually(Duration::from_secs(10), "the model asked the second question", async || {
        (model.seen().len() == 2).then_some(())
    })
    .await;
    a.kill();
    while ws.next().await.is_some() {} // A's socket is gone

    let (mut ws, welcome) = b.visitor(Some(&session)).await;
    let history = welcome["history"].as_array().unwrap();
    let ids: Vec<&str> = history.iter().filter_map(|m| m["clientId"].as_str()).collect();
    assert_eq!(ids, ["m1", "m2"], "every acknowledged message, once: {history:?}");
    let answer = loop {
        let m = next_message(&mut ws).await;
        if m["replyTo"].as_i64() == Some(seq) {
            break m;
        }
    };
    assert_eq!((answer["text"].as_str(), answer["source"].as_str()), (Some("Yes, we do."), Some("model")));
    let (_, again) = b.visitor(Some(&session)).await;
    let replies = again["history"].as_array().unwrap().iter().filter(|m| m["replyTo"].as_i64() == Some(seq)).count();
    assert_eq!(replies, 1, "answered once: {again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_nodes_serve_their_own_sockets_and_recover_when_it_returns() {
    let Some((shared, mut redis)) = cluster_parts().await else { return };
    let a = Node::start(&shared, &[]).await;
    let b = Node::start(&shared, &[]).await;
    // One visitor, two tabs: one on each node.
    let (mut tab_a, welcome) = a.visitor(None).await;
    let session = welcome["session"].as_str().unwrap().to_string();
    let (mut tab_b, _) = b.visitor(Some(&session)).await;
    let (_, answer) = tab_b.ask("t1", "How long does shipping take?").await;
    let echoed = next_message(&mut tab_a).await;
    assert_eq!(echoed["clientId"], "t1", "B's message reached the tab on A");
    assert_eq!(next_message(&mut tab_a).await["seq"], answer["seq"]);

    // Redis goes away: B still answers its own tab, nothing reaches A, and both say so.
    redis.down();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(a.log().contains("lost Redis") && b.log().contains("lost Redis")) {
        assert!(Instant::now() < deadline, "no clear log line:\n{}\n{}", a.log(), b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, during) = tab_b.ask("t2", "Do you ship to Austria?").await;
    assert_eq!(during["role"], "assistant");
    let quiet = tokio::time::timeout(Duration::from_millis(800), tab_a.next_of("message")).await;
    assert!(quiet.is_err(), "nothing crosses without Redis: {quiet:?}");

    // Redis is back: A asks its tab to resume, and the welcome brings what it missed.
    redis.up();
    let reconnect = tab_a.next_of("reconnect").await;
    assert_eq!(reconnect["reason"], "resync");
    assert!(a.log().contains("Redis is reachable again"), "{}", a.log());
    let (mut tab_a, welcome) = a.visitor(Some(&session)).await;
    let ids: Vec<&str> = welcome["history"].as_array().unwrap().iter().filter_map(|m| m["clientId"].as_str()).collect();
    assert_eq!(ids, ["t1", "t2"]);

    // And live delivery works again (B's link may come back a moment after A's).
    eventually(Duration::from_secs(15), "cross-node delivery again", async || {
        let id = format!("t3-{}", rand::random::<u32>());
        tab_b.send(json!({"type": "message", "id": id, "text": "Can I pay by invoice?"})).await;
        let got = tokio::time::timeout(Duration::from_millis(700), async {
            loop {
                let m = next_message(&mut tab_a).await;
                if m["clientId"].as_str() == Some(id.as_str()) {
                    return m;
                }
            }
        })
        .await;
        got.ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_is_noticed_and_the_link_comes_back() {
    let Some((shared, redis)) = cluster_parts().await else { return };
    let a = Node::start(&shared, &[]).await;
    let (mut ws, _) = a.visitor(None).await;
    redis.freeze(true);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !a.log().contains("lost Redis") {
        assert!(Instant::now() < deadline, "a silent Redis went unnoticed:\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The node keeps serving its own sockets meanwhile.
    let (_, answer) = ws.ask("f1", "How long does shipping take?").await;
    assert_eq!(answer["role"], "assistant");
    redis.freeze(false);
    assert_eq!(ws.next_of("reconnect").await["reason"], "resync");
    assert!(a.log().contains("Redis is reachable again"), "{}", a.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_across_nodes() {
    let Some((shared, _redis)) = cluster_parts().await else { return };
    let a = Node::start(&shared, &[]).await;
    // B runs with the rest of deploy/compose.yaml's environment.
    let compose = [
        ("AIA_NO_DEMO", "true"),
        ("AIA_PUBLIC_URL", "http://localhost:8080"),
        ("AIA_TRUSTED_PROXIES", "172.30.0.10/32"),
        // The compose file's 0.0.0.0:9315, on a free loopback port here.
        ("AIA_METRICS_ADDR", "127.0.0.1:0"),
    ];
    let b = Node::start(&shared, &compose).await;
    let (mut tab_a, welcome) = a.visitor(None).await;
    let session = welcome["session"].as_str().unwrap().to_string();
    let (mut tab_b, _) = b.visitor(Some(&session)).await;
    // The burst is 10 messages per session, wherever they are sent.
    let mut limited = 0;
    for i in 0..14 {
        let ws = if i % 2 == 0 { &mut tab_a } else { &mut tab_b };
        let id = format!("r{i}");
        ws.send(json!({"type": "message", "id": id, "text": "How long does shipping take?"})).await;
        loop {
            let f = ws.next().await.unwrap();
            if f["type"] == "ack" && f["id"] == id.as_str() {
                break;
            }
            if f["type"] == "error" && f["id"] == id.as_str() {
                assert_eq!(f["code"], "rate_limited");
                limited += 1;
                break;
            }
        }
    }
    assert_eq!(limited, 4, "10 of 14 went through, across both nodes");
}

#[tokio::test]
async fn a_node_with_another_key_or_without_postgres_refuses_to_start() {
    let Some((shared, _redis)) = cluster_parts().await else { return };
    let _a = Node::start(&shared, &[]).await;
    let mut other = Node::spawn(&shared, OTHER_KEY, &[]).unwrap();
    let status = tokio::task::spawn_blocking(move || {
        let status = other.child.wait().unwrap();
        (status, other.log())
    })
    .await
    .unwrap();
    assert!(!status.0.success());
    assert!(status.1.contains("secret key"), "a clear reason: {}", status.1);

    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("AIA_DATA_DIR", dir.path())
        .env("AIA_REDIS_URL", &shared.redis)
        .env_remove("AIA_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("--database-url postgres://"), "{text}");
}

/// A TCP forwarder to PostgreSQL that a test can cut (every connection dropped, new ones
/// refused) and restore, as a database outage looks to a node.
struct Outage {
    addr: SocketAddr,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: std::sync::Arc<std::sync::Mutex<tokio_util::sync::CancellationToken>>,
}

impl Outage {
    async fn start(upstream: SocketAddr) -> Outage {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let cut = std::sync::Arc::new(std::sync::Mutex::new(tokio_util::sync::CancellationToken::new()));
        let (d, c) = (down.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let token = c.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Outage { addr, down, cut }
    }

    fn cut(&self) {
        self.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut token = self.cut.lock().unwrap();
        token.cancel();
        *token = tokio_util::sync::CancellationToken::new();
    }

    fn restore(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn readyz(node: &Node) -> (u16, String) {
    match http().get(format!("{}/readyz", node.base)).timeout(Duration::from_secs(15)).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_postgres_fails_readiness_refuses_messages_and_loses_nothing_acknowledged() {
    let Some((mut shared, _redis)) = cluster_parts().await else { return };
    let mut url = url::Url::parse(&shared.database).unwrap();
    let upstream: SocketAddr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432)).parse().unwrap();
    let outage = Outage::start(upstream).await;
    url.set_port(Some(outage.addr.port())).unwrap();
    shared.database = url.to_string();
    let node = Node::start(&shared, &[]).await;
    let (mut ws, welcome) = node.visitor(None).await;
    let session = welcome["session"].as_str().unwrap().to_string();
    let (ack, _) = ws.ask("p1", "How long does shipping take?").await;
    assert_eq!(ack["duplicate"], false);

    // The database goes away: the node says it is not ready and refuses, never acks.
    outage.cut();
    eventually(Duration::from_secs(30), "readiness to fail", async || {
        let (status, body) = readyz(&node).await;
        (status == 503).then_some(body)
    })
    .await;
    ws.send(json!({"type": "message", "id": "p2", "text": "Do you ship to Austria?"})).await;
    let refused = loop {
        let f = ws.next().await.expect("the socket stays open");
        if f["type"] == "error" || f["type"] == "ack" {
            break f;
        }
    };
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("internal")), "{refused}");

    // It comes back: ready again, the resend is stored, and what was acknowledged is there.
    outage.restore();
    eventually(Duration::from_secs(30), "readiness again", async || (readyz(&node).await.0 == 200).then_some(())).await;
    let (ack, answer) = ws.ask("p2", "Do you ship to Austria?").await;
    assert_eq!(ack["duplicate"], false, "p2 was never stored before");
    assert_eq!(answer["role"], "assistant");
    let (_, welcome) = node.visitor(Some(&session)).await;
    let ids: Vec<&str> = welcome["history"].as_array().unwrap().iter().filter_map(|m| m["clientId"].as_str()).collect();
    assert_eq!(ids, ["p1", "p2"]);
}
