//! Resuming a conversation, as a property: whatever interleaving of new messages, resends,
//! dropped tabs (some right after sending, before the ack could be read) and reconnects one
//! visitor goes through on up to three tabs of one session, once the client resends every
//! message whose ack it never read — as the widget does after every `welcome` — the
//! conversation holds each message exactly once, at the seq its ack said, after every message
//! the client knew was stored when it first sent it, with exactly one answer. On SQLite always
//! and on PostgreSQL when `TEST_DATABASE_URL` is set; one server per store for all cases, a
//! fixed seed (the sequences repeat; the server's timing does not).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::support::{TestApp, Ws, loud_skip};

/// Tabs of the one visitor.
const TABS: usize = 3;
/// Operations per case, at most.
const MAX_OPS: usize = 32;
/// Cases per run (`PROPTEST_CASES` overrides).
const CASES: u32 = 64;

/// One thing the visitor's browser does.
#[derive(Debug, Clone)]
enum Op {
    /// Sends the next new message on `tab` and waits for its ack.
    Send(usize),
    /// Sends the next new message on `tab` and closes the socket at once, without reading
    /// anything (`abrupt`: the TCP connection just goes, no close frame): the message is
    /// stored or not, and the client never sees its ack.
    SendAndDrop { tab: usize, abrupt: bool },
    /// Sends the `pick`-th message sent so far (modulo) again on `tab`, acked or not, and
    /// waits for its ack.
    Resend { tab: usize, pick: usize },
    /// Closes `tab`.
    Drop { tab: usize, abrupt: bool },
    /// Opens `tab` afresh with the session (closing it first when open).
    Reconnect(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let tab = 0..TABS;
    prop_oneof![
        4 => tab.clone().prop_map(Op::Send),
        3 => (tab.clone(), any::<bool>()).prop_map(|(tab, abrupt)| Op::SendAndDrop { tab, abrupt }),
        3 => (tab.clone(), 0..MAX_OPS).prop_map(|(tab, pick)| Op::Resend { tab, pick }),
        1 => (tab.clone(), any::<bool>()).prop_map(|(tab, abrupt)| Op::Drop { tab, abrupt }),
        1 => tab.prop_map(Op::Reconnect),
    ]
}

/// What the cases went through, to show that the interesting paths are taken.
#[derive(Default)]
struct Tally {
    messages: AtomicUsize,
    duplicates: AtomicUsize,
    /// Messages stored while the client never read their ack (found by the final resend).
    stored_unseen: AtomicUsize,
}

impl Tally {
    fn add(counter: &AtomicUsize, n: usize) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What the client knows, like the widget: which of its messages are stored, and at which seq.
struct Visitor<'a> {
    app: &'a TestApp,
    tally: &'a Tally,
    session: String,
    tabs: Vec<Option<Ws>>,
    /// Ids in the order they were first sent.
    sent: Vec<String>,
    /// Seqs the client saw for its messages (acks and its own messages in `welcome` history).
    known: HashMap<String, i64>,
    /// The messages whose ack the client read.
    acked: HashSet<String>,
    /// For each message, the messages known stored when it was first sent: they must come first.
    known_before: HashMap<String, Vec<String>>,
}

/// Fails the case (not a panic, so proptest shrinks it) unless `cond` holds.
macro_rules! check {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!($($why)+)));
        }
    };
}

impl<'a> Visitor<'a> {
    async fn start(app: &'a TestApp, tally: &'a Tally) -> Visitor<'a> {
        let (ws, welcome) = app.visitor(None).await;
        let session = welcome["session"].as_str().expect("a session").to_string();
        let mut tabs: Vec<Option<Ws>> = (0..TABS).map(|_| None).collect();
        tabs[0] = Some(ws);
        Visitor {
            app,
            tally,
            session,
            tabs,
            sent: Vec::new(),
            known: HashMap::new(),
            acked: HashSet::new(),
            known_before: HashMap::new(),
        }
    }

    /// `tab`'s socket, reconnected with the session when it was closed (the widget connects
    /// on send).
    async fn tab(&mut self, tab: usize) -> Result<&mut Ws, TestCaseError> {
        if self.tabs[tab].is_none() {
            let ws = self.resume().await?;
            self.tabs[tab] = Some(ws);
        }
        Ok(self.tabs[tab].as_mut().unwrap())
    }

    /// A new socket on the session; what its `welcome` shows of the client's own messages is
    /// known stored from then on, and must agree with every ack.
    async fn resume(&mut self) -> Result<Ws, TestCaseError> {
        let (ws, welcome) = self.app.visitor(Some(&self.session)).await;
        check!(welcome["resumed"] == true && welcome["session"] == self.session.as_str(), "not resumed: {welcome}");
        for m in welcome["history"].as_array().unwrap() {
            if let (Some(id), Some(seq)) = (m["clientId"].as_str(), m["seq"].as_i64()) {
                self.learn(id, seq, "welcome history")?;
            }
        }
        Ok(ws)
    }

    fn learn(&mut self, id: &str, seq: i64, from: &str) -> Result<(), TestCaseError> {
        let known = *self.known.entry(id.to_string()).or_insert(seq);
        check!(known == seq, "{id} was stored as {known}, but the {from} says {seq}");
        Ok(())
    }

    /// Sends message `id` on `tab` (`new`: for the first time).
    async fn send(&mut self, tab: usize, id: &str, new: bool) -> Result<(), TestCaseError> {
        if new {
            self.known_before.insert(id.to_string(), self.known.keys().cloned().collect());
            self.sent.push(id.to_string());
        }
        let ws = self.tab(tab).await?;
        ws.send(json!({"type": "message", "id": id, "text": format!("Message {id}, about nothing in the FAQ")})).await;
        Ok(())
    }

    /// Reads `tab` up to the ack of `id`; acks of others on the way are learned too.
    async fn ack(&mut self, tab: usize, id: &str) -> Result<Value, TestCaseError> {
        loop {
            let frame = self.tabs[tab].as_mut().unwrap().next().await;
            let Some(f) = frame else {
                return Err(TestCaseError::fail(format!("tab {tab} closed before the ack of {id}")));
            };
            match f["type"].as_str() {
                Some("ack") => {
                    let (got, seq) = (f["id"].as_str().unwrap().to_string(), f["seq"].as_i64().unwrap());
                    let stored_before = self.known.contains_key(&got);
                    if f["duplicate"] == true {
                        Tally::add(&self.tally.duplicates, 1);
                    }
                    self.learn(&got, seq, "ack")?;
                    self.acked.insert(got.clone());
                    check!(
                        !stored_before || f["duplicate"] == true,
                        "{got} was stored before, yet its ack says new: {f}"
                    );
                    if got == id {
                        return Ok(f);
                    }
                }
                Some("error") => return Err(TestCaseError::fail(format!("{id} on tab {tab} refused: {f}"))),
                _ => {}
            }
        }
    }

    async fn close(&mut self, tab: usize, abrupt: bool) {
        if let Some(mut ws) = self.tabs[tab].take()
            && !abrupt
        {
            let _ = ws.stream.close(None).await;
        }
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Send(tab) => {
                let id = format!("m{}", self.sent.len() + 1);
                self.send(tab, &id, true).await?;
                self.ack(tab, &id).await?;
            }
            Op::SendAndDrop { tab, abrupt } => {
                let id = format!("m{}", self.sent.len() + 1);
                self.send(tab, &id, true).await?;
                self.close(tab, abrupt).await;
            }
            Op::Resend { tab, pick } => {
                if self.sent.is_empty() {
                    return Ok(());
                }
                let id = self.sent[pick % self.sent.len()].clone();
                self.send(tab, &id, false).await?;
                self.ack(tab, &id).await?;
            }
            Op::Drop { tab, abrupt } => self.close(tab, abrupt).await,
            Op::Reconnect(tab) => {
                self.close(tab, false).await;
                let ws = self.resume().await?;
                self.tabs[tab] = Some(ws);
            }
        }
        Ok(())
    }

    /// After the sequence: a reconnect that resends every message whose ack the client never
    /// read (all at once, then the acks in order, like the widget's outbox; the widget would
    /// spare those its `welcome` showed, resending them tests more), then the conversation as a
    /// fresh `hello` and `history` pages show it.
    async fn finish(mut self) -> Result<(), TestCaseError> {
        for tab in 0..TABS {
            self.close(tab, false).await;
        }
        self.tabs[0] = Some(self.resume().await?);
        let outbox: Vec<String> = self.sent.iter().filter(|id| !self.acked.contains(*id)).cloned().collect();
        for id in &outbox {
            self.send(0, id, false).await?;
        }
        for id in &outbox {
            if self.ack(0, id).await?["duplicate"] == true {
                Tally::add(&self.tally.stored_unseen, 1);
            }
        }
        Tally::add(&self.tally.messages, self.sent.len());
        self.close(0, false).await;

        let (mut ws, welcome) = self.app.visitor(Some(&self.session)).await;
        let mut all: Vec<Value> = welcome["history"].as_array().unwrap().clone();
        let mut more = welcome["hasMore"] == true;
        while more {
            let before = all[0]["seq"].as_i64().unwrap();
            ws.send(json!({"type": "history", "before": before, "limit": 50})).await;
            let page = ws.next_of("history").await;
            let mut older = page["messages"].as_array().unwrap().clone();
            check!(!older.is_empty(), "an empty history page before {before} with more to come");
            more = page["hasMore"] == true;
            older.append(&mut all);
            all = older;
        }
        let seqs: Vec<i64> = all.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
        check!(seqs.windows(2).all(|w| w[0] < w[1]), "history out of order: {seqs:?}");

        let visitor: Vec<(String, i64)> = all
            .iter()
            .filter(|m| m["role"] == "visitor")
            .map(|m| (m["clientId"].as_str().unwrap_or_default().to_string(), m["seq"].as_i64().unwrap()))
            .collect();
        let ids: Vec<&str> = visitor.iter().map(|(id, _)| id.as_str()).collect();
        let mut want: Vec<&str> = self.sent.iter().map(String::as_str).collect();
        let mut got = ids.clone();
        want.sort_unstable();
        got.sort_unstable();
        check!(got == want, "each message once: stored {ids:?}, sent {:?}", self.sent);
        let stored: HashMap<&str, i64> = visitor.iter().map(|(id, seq)| (id.as_str(), *seq)).collect();
        for (id, seq) in &self.known {
            check!(stored[id.as_str()] == *seq, "{id} was acked as {seq} but is stored as {}", stored[id.as_str()]);
        }
        for (id, earlier) in &self.known_before {
            for e in earlier {
                check!(
                    stored[e.as_str()] < stored[id.as_str()],
                    "{e} was stored before {id} was first sent, yet comes after it: {ids:?}"
                );
            }
        }
        for (id, seq) in &visitor {
            let answers = all.iter().filter(|m| m["replyTo"] == *seq).count();
            check!(answers == 1, "{id} (seq {seq}) has {answers} answers");
        }
        Ok(())
    }
}

async fn case(app: &TestApp, tally: &Tally, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut visitor = Visitor::start(app, tally).await;
    for op in ops {
        visitor.apply(op).await?;
    }
    visitor.finish().await
}

/// Runs the property against `app` (in `rt`) with a fixed seed: a failure is the same on every
/// run, shrunk to a short sequence.
fn property(rt: &tokio::runtime::Runtime, app: &TestApp, store: &str) {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(CASES);
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 256, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let started = Instant::now();
    let tally = Tally::default();
    let outcome = runner.run(&proptest::collection::vec(op(), 1..=MAX_OPS), |ops| {
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), case(app, &tally, &ops)).await })
            .unwrap_or_else(|_| Err(TestCaseError::fail("the case took over 60 s")))
    });
    if let Err(e) = outcome {
        panic!("resume on {store}: {e}");
    }
    let n = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    eprintln!(
        "resume on {store}: {cases} cases in {:.1} s: {} messages, {} duplicate acks, {} stored without the client reading the ack",
        started.elapsed().as_secs_f64(),
        n(&tally.messages),
        n(&tally.duplicates),
        n(&tally.stored_unseen),
    );
}

/// A server whose rate limits leave the property alone: every case is a new session with
/// dozens of frames.
fn spawn(rt: &tokio::runtime::Runtime, database_url: Option<String>) -> TestApp {
    rt.block_on(TestApp::spawn_with(|s| {
        s.limits.messages_per_minute = 1_000_000;
        s.limits.message_burst = 1_000_000;
        s.limits.sessions_per_minute = 1_000_000;
        if let Some(url) = database_url {
            s.store.database_url = Some(url);
            s.store.secret_key = Some("ab".repeat(32));
        }
    }))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

#[test]
fn resume_yields_each_message_once_in_order_on_sqlite() {
    let rt = runtime();
    let app = spawn(&rt, None);
    property(&rt, &app, "SQLite");
    rt.block_on(app.stop());
}

#[test]
fn resume_yields_each_message_once_in_order_on_postgres() {
    let rt = runtime();
    let Some(url) = rt.block_on(crate::store::fresh_postgres()) else {
        loud_skip("postgres", "TEST_DATABASE_URL is not set");
        return;
    };
    let app = spawn(&rt, Some(url));
    property(&rt, &app, "PostgreSQL");
    rt.block_on(app.stop());
}
