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
    assert_eq!(code(&get(&app, path, None).await), (401, "admin_token_required".into()));
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
