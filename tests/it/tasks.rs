//! The task board through our server: `GET /api/tasks/lists` reads the client's Trello board
//! (the fake, on loopback) with the key and token that never leave the server, behind the
//! read-only admin token.

use aia_chat::config::AdminToken;
use serde_json::Value;

use crate::support::{TestApp, http};
use crate::trello_fake::{self, FakeTrello};

const ADMIN: &str = "admin-read-token-0123456789";

async fn get(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = http().get(format!("{}{path}", app.base));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert!(!text.contains(trello_fake::KEY) && !text.contains(trello_fake::TOKEN), "a secret leaked: {text}");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_board_lists_and_labels_come_through_the_server_only_for_the_admin() {
    let trello = FakeTrello::start().await;
    let app = TestApp::spawn_with(|s| s.admin_token = Some(AdminToken::new(ADMIN).unwrap())).await;
    let path = "/api/tasks/lists?clientUid=demo";

    // Not set up yet.
    let (status, body) = get(&app, path, Some(ADMIN)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("tasks_not_configured")), "{body}");

    let mut pairs = trello.client_settings();
    pairs.retain(|p| !p.starts_with("trello_board_id="));
    pairs.push(format!("trello_board_id={}", trello_fake::BOARD_URL));
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let code = |r: &(u16, Value)| (r.0, r.1["error"]["code"].as_str().unwrap_or_default().to_string());
    assert_eq!(code(&get(&app, path, None).await), (401, "signed_out".into()), "no credentials: sign in");
    assert_eq!(code(&get(&app, path, Some("admin-read-token-WRONG")).await), (401, "admin_token_required".into()));
    assert_eq!(
        code(&get(&app, "/api/tasks/lists?clientUid=nobody", Some(ADMIN)).await),
        (404, "unknown_client".into())
    );

    let (status, body) = get(&app, path, Some(ADMIN)).await;
    assert_eq!(status, 200, "{body}");
    let lists: Vec<&str> = body["lists"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert!(lists.contains(&trello_fake::LIST_INBOX) && lists.contains(&trello_fake::LIST_IN_PROGRESS), "{body}");
    assert!(!lists.contains(&trello_fake::LIST_ARCHIVED), "open lists only: {body}");
    let labels = body["labels"].as_array().unwrap();
    assert!(labels.iter().any(|l| l["id"] == trello_fake::LABEL_BUG && l["name"] == "Bug"), "{body}");
    // The admin panel's session gets the same answer.
    let admin = app.admin("admin", crate::support::ADMIN_PASSWORD).await;
    assert_eq!(admin.get(path).await, (200, body));

    // Trello refuses the token: a clear error, and still no secret in it.
    app.set_client("demo", &["trello_token=ATTAnot-the-right-token-0000000000000000"]).await;
    let refused = get(&app, path, Some(ADMIN)).await;
    assert_eq!(code(&refused), (502, "trello_unauthorized".into()), "{refused:?}");
    assert!(refused.1["error"]["message"].as_str().unwrap().contains("invalid token"), "{refused:?}");
}

#[tokio::test]
async fn without_an_admin_token_the_endpoint_is_closed() {
    let app = TestApp::spawn().await;
    let (status, body) = get(&app, "/api/tasks/lists?clientUid=demo", Some(ADMIN)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("admin_disabled")), "{body}");
}

/// A card is made once even when the answer to its creation is lost (a crash between the
/// create call and recording its result looks the same): the retry finds it by its marker.
#[tokio::test]
async fn a_card_whose_creation_answer_was_lost_is_found_not_made_again() {
    use aia_chat::clients::{ClientSettings, UpstreamPolicy};
    use aia_chat::tasks::provider::{NewTask, TaskProvider, for_client};
    use aia_chat::tasks::trello::Trello;

    let trello = FakeTrello::start().await;
    let app = TestApp::spawn().await;
    let mut pairs = trello.client_settings();
    pairs.push(format!("trello_label_ids={}", trello_fake::LABEL_CALLBACK));
    app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let rows = app.state.store.settings_get(app.state.registry.get("demo").unwrap().row.id).await.unwrap();
    let settings = ClientSettings::from_stored(rows);
    let provider =
        for_client(&settings, &app.state.keys, "demo", Trello::http_client(UpstreamPolicy::default())).unwrap();
    let task = NewTask {
        name: "Callback: please call me back".into(),
        description: "Wants a call back.\n\n---\nref `aia-task:c-1:1`".into(),
        tag_names: vec!["bug".into(), "no such label".into()],
        marker: "aia-task:c-1:1".into(),
    };
    trello.drop_after_create(1);
    let lost = provider.create_once(&task, false).await.unwrap_err();
    assert!(lost.retryable(), "{lost}");
    assert_eq!(trello.cards().len(), 1, "the card exists although its answer was lost");
    let found = provider.create_once(&task, true).await.unwrap();
    assert_eq!(trello.cards().len(), 1, "found, not made again");
    let card = &trello.cards()[0];
    assert_eq!(found.id, card.id);
    assert!(card.id_labels.contains(&trello_fake::LABEL_CALLBACK.to_string()), "the default label");
    assert!(card.id_labels.contains(&trello_fake::LABEL_BUG.to_string()), "the category's label by name");
    assert_eq!(card.id_labels.len(), 2, "an unknown label name is dropped, not created");
    // A fresh request with another marker makes its own card.
    let other = NewTask { marker: "aia-task:c-1:2".into(), description: "ref `aia-task:c-1:2`".into(), ..task };
    provider.create_once(&other, true).await.unwrap();
    assert_eq!(trello.cards().len(), 2);
}

mod conversation {
    //! Tasks over the visitor's WebSocket, without a model (the rule-based detector).

    use std::time::{Duration, Instant};

    use serde_json::{Value, json};

    use crate::support::{TestApp, Ws};
    use crate::trello_fake::{self, FakeCard, FakeTrello};

    async fn tasks_app(trello: &FakeTrello, extra: &[&str]) -> TestApp {
        let app = TestApp::spawn().await;
        let mut pairs = trello.client_settings();
        pairs.push(format!("trello_label_ids={}", trello_fake::LABEL_QUOTE));
        pairs.extend(extra.iter().map(|s| s.to_string()));
        app.set_client("demo", &pairs.iter().map(String::as_str).collect::<Vec<_>>()).await;
        app
    }

    async fn cards_eventually(trello: &FakeTrello, n: usize) -> Vec<FakeCard> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let cards = trello.cards();
            if cards.len() >= n {
                return cards;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {n} cards, have {}", cards.len());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The system message that confirms a created task.
    async fn task_confirmation(ws: &mut Ws) -> Value {
        loop {
            let m = ws.next_of("message").await["message"].clone();
            if m["role"] == "system" {
                return m;
            }
        }
    }

    #[tokio::test]
    async fn a_request_is_proposed_confirmed_and_becomes_one_card_with_a_reference() {
        let trello = FakeTrello::start().await;
        let app = tasks_app(&trello, &[]).await;
        let (mut ws, _) = app.visitor(None).await;
        ws.send(json!({"type": "identify", "name": "Dana", "email": "dana@example.org"})).await;

        // A FAQ question is answered as always.
        let (_, faq) = ws.ask("t0", "What is your return policy?").await;
        assert_eq!(faq["role"], "assistant");
        assert!(!faq["text"].as_str().unwrap().contains("Shall I"), "{faq}");

        let (_, proposal) = ws.ask("t1", "Please call me back tomorrow morning, +49 171 2345678").await;
        assert!(proposal["text"].as_str().unwrap().contains("Shall I?"), "{proposal}");
        assert!(trello.cards().is_empty(), "nothing before the visitor says yes");
        let (_, thanks) = ws.ask("t2", "Yes please").await;
        assert!(thanks["text"].as_str().unwrap().contains("passing it on"), "{thanks}");
        let done = task_confirmation(&mut ws).await;
        let title = done["task"]["title"].as_str().expect("a task view").to_string();
        assert!(title.starts_with("Callback: Please call me back") && title.contains("(ref "), "{done}");
        assert!(done.get("url").is_none() && done["task"].get("url").is_none(), "the board stays private: {done}");

        let cards = cards_eventually(&trello, 1).await;
        let card = &cards[0];
        assert_eq!(card.id_list, trello_fake::LIST_INBOX);
        assert!(title.contains(&card.short_link), "the reference is the card's: {title}");
        assert!(card.id_labels.contains(&trello_fake::LABEL_QUOTE.to_string()), "the default label");
        assert!(card.id_labels.contains(&trello_fake::LABEL_CALLBACK.to_string()), "the category's label");
        for part in ["+49 171 2345678", "unverified", "Dana", "dana@example.org", "aia-task:"] {
            assert!(card.desc.contains(part), "{part} in {}", card.desc);
        }
        // Sent again (a reconnecting widget resends): no second proposal, no second card.
        ws.send(
            json!({"type": "message", "id": "t1", "text": "Please call me back tomorrow morning, +49 171 2345678"}),
        )
        .await;
        assert_eq!(ws.next_of("ack").await["duplicate"], true);
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(trello.cards().len(), 1);
    }

    #[tokio::test]
    async fn a_no_makes_no_card_and_without_confirmation_the_card_is_made_at_once() {
        let trello = FakeTrello::start().await;
        let app = tasks_app(&trello, &[]).await;
        let (mut ws, _) = app.visitor(None).await;
        ws.ask("n1", "I want to return my order 1001").await;
        let (_, ok) = ws.ask("n2", "No thanks").await;
        assert!(ok["text"].as_str().unwrap().contains("won't pass it on"), "{ok}");
        // Moving on drops a proposal too.
        ws.ask("n3", "Can I get a quote for 50 kettles?").await;
        let (_, answer) = ws.ask("n4", "How long does shipping take?").await;
        assert!(!answer["text"].as_str().unwrap().contains("passing"), "{answer}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(trello.cards().is_empty());

        // A socket takes the client's settings when it connects.
        app.set_client("demo", &["tasks_require_confirmation=off"]).await;
        let (mut ws, _) = app.visitor(None).await;
        let (_, queued) = ws.ask("n5", "I found a bug: the checkout is broken on mobile").await;
        assert!(queued["text"].as_str().unwrap().contains("I'm passing your request"), "{queued}");
        let done = task_confirmation(&mut ws).await;
        assert!(done["task"]["title"].as_str().unwrap().starts_with("Bug: "), "{done}");
        let cards = cards_eventually(&trello, 1).await;
        assert!(cards[0].id_labels.contains(&trello_fake::LABEL_BUG.to_string()));
    }

    #[tokio::test]
    async fn requests_per_session_and_day_are_capped() {
        let trello = FakeTrello::start().await;
        let app = tasks_app(&trello, &["tasks_require_confirmation=off", "tasks_max_per_session_day=1"]).await;
        let (mut ws, _) = app.visitor(None).await;
        ws.ask("c1", "Please call me back").await;
        task_confirmation(&mut ws).await;
        let (_, capped) = ws.ask("c2", "I want to complain about the courier").await;
        assert!(capped["text"].as_str().unwrap().contains("several requests today"), "{capped}");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(trello.cards().len(), 1);
    }

    #[tokio::test]
    async fn an_outage_and_a_lost_answer_still_make_exactly_one_card() {
        let trello = FakeTrello::start().await;
        let app = tasks_app(&trello, &["tasks_require_confirmation=off"]).await;
        let (mut ws, _) = app.visitor(None).await;
        trello.down().await;
        ws.ask("o1", "Please call me back").await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Back, but the first create's answer is lost after the card was made.
        trello.drop_after_create(1);
        trello.up().await;
        assert_eq!(cards_eventually(&trello, 1).await.len(), 1);
        let done = task_confirmation(&mut ws).await;
        assert!(done["task"]["title"].as_str().unwrap().contains("(ref "), "{done}");
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(trello.cards().len(), 1, "exactly one card");
    }

    /// The process died after Trello made the card and before the result was recorded: the
    /// task is still queued, with its attempt counted. After the restart the worker finds the
    /// card by its marker and makes no second one.
    #[tokio::test]
    async fn after_a_crash_mid_create_the_card_is_found_not_made_again() {
        use aia_chat::ids::{now_ms, token_hash};
        use aia_chat::store::{NewTaskRecord, TaskState};
        let trello = FakeTrello::start().await;
        let app = tasks_app(&trello, &["tasks_require_confirmation=off"]).await;
        let (mut ws, welcome) = app.visitor(None).await;
        let client = app.state.registry.get("demo").unwrap().row.id;
        let token = welcome["session"].as_str().unwrap();
        let session = app.state.store.session_find(client, &token_hash(token)).await.unwrap().unwrap();
        let marker = format!("aia-task:{}:7", session.conversation_id);
        let task = app
            .state
            .store
            .task_insert(&NewTaskRecord {
                client_id: client,
                session_id: session.id,
                marker: marker.clone(),
                category: Some("Callback".into()),
                title: "Callback: call me".into(),
                summary: "Call me back".into(),
                contact: None,
                page: None,
                state: TaskState::Queued,
                now: now_ms(),
            })
            .await
            .unwrap();
        // What the dead process left: the attempt counted (due again now), the card made.
        app.state.store.task_attempt(task.id, now_ms()).await.unwrap();
        let made = trello.add_card(trello_fake::LIST_INBOX, "Callback: call me", &format!("…\n---\nref `{marker}`"));
        let done = task_confirmation(&mut ws).await;
        let card = trello.card(&made).expect("the card");
        assert!(done["task"]["title"].as_str().unwrap().contains(&format!("(ref {})", card.short_link)), "{done}");
        assert_eq!(trello.cards().len(), 1, "no second card");
    }

    #[tokio::test]
    async fn a_rate_limited_create_is_retried_after_trellos_wait() {
        use crate::trello_fake::{Failure, Scope};
        let trello = FakeTrello::start().await;
        let app = tasks_app(&trello, &["tasks_require_confirmation=off"]).await;
        let (mut ws, _) = app.visitor(None).await;
        trello.fail_next_with(1, Failure::rate_limited(Scope::Token));
        ws.ask("l1", "Can I get a quote for 50 kettles?").await;
        let done = task_confirmation(&mut ws).await;
        assert!(done["task"]["title"].as_str().unwrap().starts_with("Quote: "), "{done}");
        assert_eq!(trello.cards().len(), 1);
        let show = String::from_utf8(app.cli(&["client", "show", "demo"]).stdout).unwrap();
        assert!(!show.contains("task failures"), "a retried 429 is not a failure: {show}");
    }

    #[tokio::test]
    async fn a_refused_task_tells_the_visitor_and_the_admin() {
        let trello = FakeTrello::start().await;
        let app = tasks_app(&trello, &["tasks_require_confirmation=off"]).await;
        app.set_client("demo", &["trello_token=ATTAnot-the-right-token-0000000000000000"]).await;
        let (mut ws, _) = app.visitor(None).await;
        ws.ask("r1", "Please call me back").await;
        let sorry = task_confirmation(&mut ws).await;
        assert!(sorry["text"].as_str().unwrap().contains("couldn't pass your request"), "{sorry}");
        assert!(sorry.get("task").is_none(), "{sorry}");
        // The visitor is told first (a crash then cannot leave the failure untold); the
        // failure is recorded right after.
        let deadline = Instant::now() + Duration::from_secs(10);
        let show = loop {
            let show = String::from_utf8(app.cli(&["client", "show", "demo"]).stdout).unwrap();
            if show.contains("task failures") || Instant::now() > deadline {
                break show;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(show.contains("task failures") && show.contains("invalid token"), "{show}");
        assert!(!show.contains(trello_fake::TOKEN) && !show.contains(trello_fake::KEY), "{show}");
        // The chat goes on.
        let (_, answer) = ws.ask("r2", "How long does shipping take?").await;
        assert_eq!(answer["role"], "assistant");
    }

    #[tokio::test]
    async fn the_models_create_task_is_confirmed_by_the_visitor_and_made_once() {
        use crate::model_fake::{FakeModel, create_task_stream, text_stream};
        let trello = FakeTrello::start().await;
        let model = FakeModel::start(vec![create_task_stream(), text_stream(Duration::ZERO)]).await;
        let app = tasks_app(&trello, &[&format!("model_url={}", model.base())]).await;
        let (mut ws, _) = app.visitor(None).await;
        // Words the rule-based detector would not take: the model decides.
        let (_, answer) = ws.ask("m1", "My kettle arrived broken, can someone phone me about it?").await;
        assert_eq!(answer["source"], "model", "{answer}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(trello.cards().is_empty(), "not before the visitor says yes");
        let (_, thanks) = ws.ask("m2", "yes").await;
        assert!(thanks["text"].as_str().unwrap().contains("passing it on"), "{thanks}");
        let cards = cards_eventually(&trello, 1).await;
        assert_eq!(cards[0].name, "Callback: broken kettle");
        assert!(cards[0].desc.contains("+49 171 2345678") && cards[0].desc.contains("unverified"), "{}", cards[0].desc);
        assert!(cards[0].id_labels.contains(&trello_fake::LABEL_CALLBACK.to_string()));
        let done = task_confirmation(&mut ws).await;
        assert!(done["task"]["title"].as_str().unwrap().starts_with("Callback: broken kettle (ref "), "{done}");
    }
}
