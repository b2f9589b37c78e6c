//! The Trello client against the fake Trello (`trello_fake`): each call's request as the
//! contract prescribes it, the answers read, every failure classified — with the key and token
//! never showing in an error — the rate limits, and a crash between creating a card and
//! hearing back. Also: the fake itself answers as the contract says, byte for byte.

use std::time::Duration;

use aia_chat::clients::{UpstreamPolicy, normalize, settings};
use aia_chat::tasks::trello::{
    NewCard, Position, RATE_LIMIT_WAIT, RATE_LIMIT_WINDOW, Trello, TrelloConfig, TrelloError, card_body, find_label,
};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::trello_fake::{
    self as fake, BOARD_ID, BOARD_SHORT_LINK, BOARD_URL, Failure, FakeTrello, KEY, LABEL_BUG, LABEL_CALLBACK,
    LABEL_COMPLAINT, LABEL_QUOTE, LABEL_RETURN, LIST_ARCHIVED, LIST_IN_PROGRESS, LIST_INBOX, OTHER_BOARD_ID,
    OTHER_LABEL, OTHER_LIST, RateLimits, Scope, TOKEN,
};

/// A well-formed id no board, list or label has.
const UNKNOWN_ID: &str = "5f1a2b3c4d5e6f7a8b9c0dff";
/// A second token of the same key.
const TOKEN_2: &str = "ATTAsecondtoken0000000000000000000000000000000000000000000000000000000000A11CE";

fn http() -> reqwest::Client {
    Trello::http_client(UpstreamPolicy::default())
}

fn new_card(name: &str, desc: &str) -> NewCard {
    NewCard {
        id_list: LIST_INBOX.into(),
        name: name.into(),
        desc: desc.into(),
        id_labels: Vec::new(),
        pos: Position::Bottom,
        url_source: None,
    }
}

fn assert_no_secrets(e: &TrelloError) {
    for shown in [e.to_string(), format!("{e:?}")] {
        for secret in [KEY, TOKEN, TOKEN_2] {
            assert!(!shown.contains(secret), "a secret shows in {shown}");
        }
    }
}

#[tokio::test]
async fn trello_lists_and_labels_of_the_board() {
    let tr = FakeTrello::start().await;
    let client = tr.client();

    let lists = client.lists(BOARD_ID).await.unwrap();
    let names: Vec<(&str, &str)> = lists.iter().map(|l| (l.id.as_str(), l.name.as_str())).collect();
    assert_eq!(names, [(LIST_INBOX, "Inbox"), (LIST_IN_PROGRESS, "In progress")], "open lists, by position");
    assert_eq!(lists[0].pos, Some(16384.0));
    let seen = tr.seen().pop().unwrap();
    assert_eq!((seen.method.as_str(), seen.route()), ("GET", format!("/1/boards/{BOARD_ID}/lists").as_str()));
    assert_eq!(
        seen.query(),
        [("filter", "open"), ("fields", "id,name,pos,closed"), ("key", KEY), ("token", TOKEN)]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(seen.raw.is_empty() && seen.headers.get("content-type").is_none(), "never a body with GET");

    // The board by short link or by its URL: the same lists.
    assert_eq!(client.lists(BOARD_SHORT_LINK).await.unwrap(), lists);
    assert_eq!(client.lists(BOARD_URL).await.unwrap(), lists);
    assert_eq!(tr.seen().pop().unwrap().route(), format!("/1/boards/{BOARD_SHORT_LINK}/lists"));
    // Something that is no board never leaves.
    let before = tr.seen().len();
    let e = client.lists("Shop support").await.unwrap_err();
    assert!(matches!(&e, TrelloError::Invalid(m) if m.contains("not a Trello board")) && !e.retryable(), "{e}");
    assert_eq!(tr.seen().len(), before);

    let labels = client.labels(BOARD_ID).await.unwrap();
    let names: Vec<&str> = labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["Bug", "Complaint", "Callback", "Quote", "Return", ""]);
    assert_eq!(labels[2].color.as_deref(), Some("sky_dark"), "shade colours are plain strings");
    assert_eq!(labels[4].color, None);
    assert_eq!(find_label(&labels, "complaint").map(|l| l.id.as_str()), Some(LABEL_COMPLAINT));
    let seen = tr.seen().pop().unwrap();
    assert_eq!(seen.route(), format!("/1/boards/{BOARD_ID}/labels"));
    assert_eq!(
        (seen.param("fields").as_deref(), seen.param("limit").as_deref()),
        (Some("id,name,color"), Some("1000"))
    );

    // More than Trello's default 50: all of them.
    for i in 0..60 {
        tr.add_label(BOARD_ID, &format!("Topic {i}"), Some("blue"));
    }
    assert_eq!(client.labels(BOARD_SHORT_LINK).await.unwrap().len(), 66);

    // The budget the answers reported.
    let budget = client.rate_budget().unwrap();
    assert_eq!((budget.key_max, budget.token_max), (Some(300), Some(100)));
    assert_eq!(budget.token_remaining, Some(100 - 5));
    assert_eq!(budget.interval, Some(Duration::from_secs(10)));
    assert!(!budget.low());
}

#[tokio::test]
async fn trello_cards_are_created_as_the_contract_says() {
    let tr = FakeTrello::start().await;
    let client = tr.client();
    let card = NewCard {
        id_list: LIST_INBOX.into(),
        name: "Customer asks about bulk discount".into(),
        desc: "Chat c_5f1c…\n\n**Customer:** Do you offer discounts for 50+ units?\n\naia-task:t_1".into(),
        id_labels: vec![LABEL_QUOTE.into(), LABEL_CALLBACK.into()],
        pos: Position::Top,
        url_source: Some("https://shop.example/admin/chats/c_5f1c".into()),
    };
    let made = client.create_card(&card).await.unwrap();
    let seen = tr.seen().pop().unwrap();
    assert_eq!((seen.method.as_str(), seen.route()), ("POST", "/1/cards"));
    assert_eq!(
        seen.query(),
        [("key", KEY), ("token", TOKEN)].map(|(k, v)| (k.to_string(), v.to_string())),
        "only the credentials in the query"
    );
    assert_eq!(seen.body, card_body(&card));
    assert_eq!(seen.body["idLabels"], format!("{LABEL_QUOTE},{LABEL_CALLBACK}"));
    assert_eq!(seen.headers.get("content-type").unwrap(), "application/json");

    assert_eq!(made.id_short, Some(1));
    assert_eq!(made.short_url, format!("https://trello.com/c/{}", made.short_link));
    assert_eq!(made.link(), made.short_url);
    assert_eq!(made.url, format!("https://trello.com/c/{}/1-customer-asks-about-bulk-discount", made.short_link));
    assert_eq!((made.id_list.as_str(), made.name.as_str()), (LIST_INBOX, "Customer asks about bulk discount"));
    assert_eq!(made.id_labels, [LABEL_QUOTE, LABEL_CALLBACK]);
    let stored = tr.card(&made.id).unwrap();
    assert_eq!(stored.desc, card.desc, "the Markdown as sent");
    assert_eq!(stored.url_source.as_deref(), Some("https://shop.example/admin/chats/c_5f1c"));
    assert_eq!(stored.pos, 8192.0, "top of an empty list");

    // Numbered per board; positions at the bottom and the top.
    let second = client.create_card(&new_card("Second", "aia-task:t_2")).await.unwrap();
    assert_eq!(second.id_short, Some(2));
    assert_eq!(tr.card(&second.id).unwrap().pos, 8192.0 + 16384.0);
    let third = client.create_card(&NewCard { pos: Position::Top, ..new_card("Third", "aia-task:t_3") }).await.unwrap();
    assert_eq!(tr.card(&third.id).unwrap().pos, 4096.0);
    let fourth = client.create_card(&NewCard { pos: Position::At(10_000.5), ..new_card("Fourth", "") }).await.unwrap();
    assert_eq!(tr.card(&fourth.id).unwrap().pos, 10_000.5);

    // A list's cards, by position, with what a lookup needs.
    let cards = client.list_cards(LIST_INBOX).await.unwrap();
    let ids: Vec<&str> = cards.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [&third.id, &made.id, &fourth.id, &second.id]);
    assert_eq!(cards[1], made, "the same card as the creation gave");
    let seen = tr.seen().pop().unwrap();
    assert_eq!(seen.route(), format!("/1/lists/{LIST_INBOX}/cards"));
    assert!(seen.param("fields").unwrap().contains("desc"));

    let found = client.find_card(LIST_INBOX, "aia-task:t_2").await.unwrap().unwrap();
    assert_eq!(found.id, second.id);
    assert_eq!(client.find_card(LIST_INBOX, "aia-task:t_9").await.unwrap(), None);
    assert_eq!(client.find_card(LIST_IN_PROGRESS, "aia-task:t_1").await.unwrap(), None);
    assert!(matches!(client.find_card(LIST_INBOX, " ").await, Err(TrelloError::Invalid(_))));

    // Cards someone made by hand are there too.
    tr.add_card(LIST_IN_PROGRESS, "By hand", "notes");
    assert_eq!(client.list_cards(LIST_IN_PROGRESS).await.unwrap()[0].name, "By hand");
    assert_eq!(client.labels(BOARD_ID).await.unwrap().len(), 6);
}

#[tokio::test]
async fn trello_failures_are_classified() {
    let tr = FakeTrello::start().await;
    let client = tr.client();
    let mut errors = Vec::new();
    let mut check = |e: TrelloError, want: TrelloError| {
        assert_eq!(e, want);
        errors.push(e);
    };

    // 401: key, token, access — never retried.
    let wrong_key = Trello::new(TrelloConfig { key: "ffffffffffffffffffffffffffffffff".into(), ..tr.config() }, http());
    let e = wrong_key.unwrap().lists(BOARD_ID).await.unwrap_err();
    assert!(!e.retryable());
    check(e, TrelloError::Unauthorized("invalid key".into()));
    let wrong_token = Trello::new(TrelloConfig { token: TOKEN_2.into(), ..tr.config() }, http()).unwrap();
    check(wrong_token.labels(BOARD_ID).await.unwrap_err(), TrelloError::Unauthorized("invalid token".into()));
    let no_access = TrelloError::Unauthorized("unauthorized permission requested".into());
    check(client.lists(OTHER_BOARD_ID).await.unwrap_err(), no_access.clone());
    check(client.list_cards(OTHER_LIST).await.unwrap_err(), no_access.clone());
    let foreign = NewCard { id_list: OTHER_LIST.into(), ..new_card("x", "") };
    check(client.create_card(&foreign).await.unwrap_err(), no_access);

    // 400: malformed ids and values.
    let e = client.list_cards("Inbox").await.unwrap_err();
    assert!(!e.retryable());
    check(e, TrelloError::Invalid("invalid id".into()));
    for list in ["Inbox", ""] {
        let bad = NewCard { id_list: list.into(), ..new_card("x", "") };
        check(client.create_card(&bad).await.unwrap_err(), TrelloError::Invalid("invalid value for idList".into()));
    }
    let bad_label = NewCard { id_labels: vec!["Bug".into()], ..new_card("x", "") };
    check(client.create_card(&bad_label).await.unwrap_err(), TrelloError::Invalid("Invalid objectId".into()));
    let other_label = NewCard { id_labels: vec![LABEL_BUG.into(), OTHER_LABEL.into()], ..new_card("x", "") };
    check(
        client.create_card(&other_label).await.unwrap_err(),
        TrelloError::Invalid("invalid value for idLabels".into()),
    );
    let before = tr.seen().len();
    let long = new_card(&"n".repeat(16_385), "");
    assert!(matches!(client.create_card(&long).await, Err(TrelloError::Invalid(m)) if m.contains("16384")));
    assert_eq!(tr.seen().len(), before, "refused before sending");

    // 404: stale ids.
    let stale = NewCard { id_list: UNKNOWN_ID.into(), ..new_card("x", "") };
    let e = client.create_card(&stale).await.unwrap_err();
    assert!(!e.retryable());
    check(e, TrelloError::NotFound("could not find the board that the card belongs to".into()));
    let gone = TrelloError::NotFound("The requested resource was not found.".into());
    check(client.lists(UNKNOWN_ID).await.unwrap_err(), gone.clone());
    check(client.labels("Ab3dE5gH").await.unwrap_err(), gone.clone());
    check(client.list_cards(UNKNOWN_ID).await.unwrap_err(), gone);
    assert!(tr.cards().is_empty(), "no refused card was stored");

    // 5xx, a stall, a garbled success: unavailable (retryable) or unreadable.
    for status in [500, 502, 503] {
        tr.fail_next(1, status);
        let e = client.lists(BOARD_ID).await.unwrap_err();
        assert!(matches!(&e, TrelloError::Unavailable(m) if m.contains(&status.to_string())) && e.retryable(), "{e}");
        errors.push(e);
    }
    tr.fail_next_with(1, Failure::answer(200, "text/html", "<html>maintenance</html>"));
    let e = client.labels(BOARD_ID).await.unwrap_err();
    assert!(matches!(&e, TrelloError::Protocol(m) if m.contains("maintenance")) && !e.retryable(), "{e}");
    errors.push(e);
    tr.fail_next_with(1, Failure::stall(Duration::from_secs(2)));
    let impatient = tr.client().with_timeout(Duration::from_millis(500));
    let e = impatient.list_cards(LIST_INBOX).await.unwrap_err();
    assert!(matches!(&e, TrelloError::Unavailable(m) if m.contains("within")) && e.retryable(), "{e}");
    errors.push(e);
    // An error body that quotes the request's credentials loses them.
    let echo = format!("proxy error for /1/boards/x/lists?key={KEY}&token={TOKEN}");
    tr.fail_next_with(1, Failure::answer(502, "text/plain", &echo));
    let e = client.lists(BOARD_ID).await.unwrap_err();
    assert!(matches!(&e, TrelloError::Unavailable(m) if m.contains("key=[redacted]&token=[redacted]")), "{e}");
    errors.push(e);
    // A huge error page is cut short, not read whole.
    tr.fail_next_with(1, Failure::answer(503, "text/html", &"<p>busy</p>".repeat(100_000)));
    let e = client.lists(BOARD_ID).await.unwrap_err();
    assert!(e.retryable() && e.to_string().len() < 400, "{e}");

    // Down: connections refused (and the pooled one dropped); up again on the same port.
    tr.down().await;
    let e = client.lists(BOARD_ID).await.unwrap_err();
    assert!(matches!(e, TrelloError::Unavailable(_)) && e.retryable(), "{e}");
    errors.push(e);
    let e = client.create_card(&new_card("While down", "")).await.unwrap_err();
    assert!(e.retryable(), "{e}");
    errors.push(e);
    tr.up().await;
    assert_eq!(client.lists(BOARD_ID).await.unwrap().len(), 2);
    assert!(tr.cards().is_empty());

    for e in &errors {
        assert_no_secrets(e);
    }
    let shown = format!("{client:?} {:?}", tr.config());
    assert!(!shown.contains(KEY) && !shown.contains(TOKEN), "{shown}");
}

#[tokio::test]
async fn trello_rate_limits_follow_the_contract() {
    let tr = FakeTrello::start().await;
    let client = tr.client();
    tr.add_token(TOKEN_2);
    let client_2 = Trello::new(TrelloConfig { token: TOKEN_2.into(), ..tr.config() }, http()).unwrap();
    let limits = |key_max, token_max, window, lockout_after| RateLimits { window, key_max, token_max, lockout_after };
    let minute = Duration::from_secs(60);

    // The token's budget: the contract's backoff, as Trello names no wait.
    tr.rate_limit(Some(limits(100, 2, minute, 200)));
    client.lists(BOARD_ID).await.unwrap();
    assert!(!client.rate_budget().unwrap().low());
    client.lists(BOARD_ID).await.unwrap();
    assert_eq!(client.rate_budget().unwrap().token_remaining, Some(0));
    assert!(client.rate_budget().unwrap().low(), "time to slow down");
    let e = client.lists(BOARD_ID).await.unwrap_err();
    assert_eq!(e, TrelloError::RateLimited { retry_after: RATE_LIMIT_WAIT });
    assert!(e.retryable());
    client_2.lists(BOARD_ID).await.expect("another token has its own budget");

    // The key's budget, shared by its tokens: wait out the window.
    tr.rate_limit(Some(limits(3, 100, minute, 200)));
    client.lists(BOARD_ID).await.unwrap();
    client_2.lists(BOARD_ID).await.unwrap();
    client.labels(BOARD_ID).await.unwrap();
    let e = client_2.labels(BOARD_ID).await.unwrap_err();
    assert_eq!(e, TrelloError::RateLimited { retry_after: RATE_LIMIT_WINDOW });

    // A new window, a new budget.
    tr.rate_limit(Some(limits(100, 1, Duration::from_secs(1), 1000)));
    client.lists(BOARD_ID).await.unwrap();
    assert!(client.lists(BOARD_ID).await.unwrap_err().retryable());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.lists(BOARD_ID).await.expect("the window passed");

    // Too many 429s lock the whole key for the rest of the window.
    tr.rate_limit(Some(limits(100, 1, minute, 2)));
    client.lists(BOARD_ID).await.unwrap();
    for _ in 0..3 {
        assert_eq!(client.lists(BOARD_ID).await.unwrap_err().retry_after(), Some(RATE_LIMIT_WAIT));
    }
    let e = client_2.lists(BOARD_ID).await.unwrap_err();
    assert_eq!(e, TrelloError::RateLimited { retry_after: RATE_LIMIT_WINDOW }, "a fresh token is locked out too");

    // A rate-limited creation was rejected: nothing was made, sending it again is safe.
    tr.rate_limit(Some(limits(100, 0, minute, 1000)));
    let e = client.create_card(&new_card("Limited", "aia-task:t_1")).await.unwrap_err();
    assert!(matches!(e, TrelloError::RateLimited { .. }));
    assert!(tr.cards().is_empty());
    tr.rate_limit(None);
    client.create_card(&new_card("Limited", "aia-task:t_1")).await.unwrap();
    assert_eq!(tr.cards().len(), 1);

    // The forced variants, and a Retry-After should a proxy ever add one.
    tr.fail_next_with(1, Failure::rate_limited(Scope::Key));
    assert_eq!(client.lists(BOARD_ID).await.unwrap_err().retry_after(), Some(RATE_LIMIT_WINDOW));
    tr.fail_next_with(1, Failure::rate_limited(Scope::Token).header("retry-after", "7"));
    assert_eq!(client.lists(BOARD_ID).await.unwrap_err().retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn trello_crash_after_create_leaves_a_card_to_find() {
    let tr = FakeTrello::start().await;
    let client = tr.client();
    let marker = "aia-task:t_81c2";
    let card = NewCard {
        id_labels: vec![LABEL_RETURN.into()],
        ..new_card("Return a broken lamp", &format!("The visitor wants to return order 1042.\n\n{marker}"))
    };

    tr.drop_after_create(1);
    let e = client.create_card(&card).await.unwrap_err();
    assert!(matches!(e, TrelloError::Unavailable(_)) && e.retryable(), "{e}");
    assert_no_secrets(&e);
    let stored = tr.cards();
    assert_eq!(stored.len(), 1, "the card was made although the answer never came");

    // Before creating again: was it made? Found by the marker, with the link to show.
    let found = client.find_card(LIST_INBOX, marker).await.unwrap().expect("the card of the first attempt");
    assert_eq!(found.id, stored[0].id);
    assert_eq!(found.link(), stored[0].short_url());
    assert_eq!(found.id_labels, [LABEL_RETURN]);
    assert_eq!(tr.cards().len(), 1);

    // The next creation is answered as usual.
    let next = client.create_card(&new_card("Another", "aia-task:t_81c3")).await.unwrap();
    assert_eq!(next.id_short, Some(2));
}

/// (status, content type, body, headers) of a request sent without our client.
async fn raw(
    method: reqwest::Method,
    url: String,
    body: Option<(&str, String)>,
    authorization: Option<&str>,
) -> (u16, String, String, HeaderMap) {
    let mut request = http().request(method, url);
    if let Some((content_type, body)) = body {
        request = request.header("content-type", content_type).body(body);
    }
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers.get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (status, content_type, response.text().await.unwrap(), headers)
}

#[tokio::test]
async fn trello_fake_speaks_the_contracts_errors_byte_for_byte() {
    use reqwest::Method;
    let tr = FakeTrello::start().await;
    let base = tr.base();
    let auth = format!("key={KEY}&token={TOKEN}");
    let text = "text/plain; charset=utf-8";
    let json_type = "application/json; charset=utf-8";
    let get = |path: &str| raw(Method::GET, format!("{base}{path}"), None, None);
    let post = |query: String, body: Value| {
        let url = format!("{base}/cards?{query}");
        raw(Method::POST, url, Some(("application/json", body.to_string())), None)
    };

    for (path, status, body) in [
        (format!("/boards/{BOARD_ID}/lists"), 401, "invalid key"),
        (format!("/boards/{BOARD_ID}/lists?key=nope&token={TOKEN}"), 401, "invalid key"),
        (format!("/boards/{BOARD_ID}/lists?key={KEY}"), 401, "invalid token"),
        (format!("/boards/{BOARD_ID}/lists?key={KEY}&token=expired"), 401, "invalid token"),
        (format!("/boards/{OTHER_BOARD_ID}/lists?{auth}"), 401, "unauthorized permission requested"),
        (format!("/boards/Shop%20support/lists?{auth}"), 400, "invalid id"),
        (format!("/lists/Inbox/cards?{auth}"), 400, "invalid id"),
        (format!("/boards/{BOARD_ID}/lists?filter=bogus&{auth}"), 400, "invalid value for filter"),
        (format!("/boards/{UNKNOWN_ID}/lists?{auth}"), 404, "The requested resource was not found."),
        (format!("/nothing/here?{auth}"), 404, "The requested resource was not found."),
    ] {
        let (s, ct, b, _) = get(&path).await;
        assert_eq!((s, ct.as_str(), b.as_str()), (status, text, body), "{path}");
    }
    for (body, status, content_type, want) in [
        (json!({ "name": "x" }), 400, text, "invalid value for idList"),
        (json!({ "idList": "Inbox" }), 400, text, "invalid value for idList"),
        (json!({ "idList": UNKNOWN_ID }), 404, text, "could not find the board that the card belongs to"),
        (json!({ "idList": LIST_INBOX, "name": 5 }), 400, text, "invalid value for name"),
        (
            json!({ "idList": LIST_INBOX, "idLabels": "nope" }),
            400,
            json_type,
            r#"{"message":"Invalid objectId","error":"ERROR"}"#,
        ),
    ] {
        let (s, ct, b, _) = post(auth.clone(), body.clone()).await;
        assert_eq!((s, ct.as_str(), b.as_str()), (status, content_type, want), "{body}");
    }
    let (s, _, _, _) = raw(
        Method::GET,
        format!("{base}/boards/{BOARD_ID}/lists?{auth}"),
        Some(("application/json", "{}".into())),
        None,
    )
    .await;
    assert_eq!(s, 403, "never a body with GET");

    // Successes: JSON, with the rate-limit headers as strings.
    let (s, ct, b, h) = get(&format!("/boards/{BOARD_ID}/lists?{auth}")).await;
    assert_eq!((s, ct.as_str()), (200, json_type));
    let header = |name: &str| h.get(name).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(header("x-rate-limit-api-key-interval-ms").as_deref(), Some("10000"));
    assert_eq!(header("x-rate-limit-api-key-max").as_deref(), Some("300"));
    assert_eq!(header("x-rate-limit-api-token-interval-ms").as_deref(), Some("10000"));
    assert_eq!(header("x-rate-limit-api-token-max").as_deref(), Some("100"));
    let remaining: u32 = header("x-rate-limit-api-token-remaining").unwrap().parse().unwrap();
    assert!(remaining < 100);
    assert!(header("x-rate-limit-api-key-remaining").is_some());
    let lists: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(
        lists[0],
        json!({ "id": LIST_INBOX, "name": "Inbox", "closed": false, "color": null, "idBoard": BOARD_ID,
                "pos": 16384, "subscribed": false, "softLimit": null })
    );
    let (_, _, b, _) = get(&format!("/boards/{BOARD_SHORT_LINK}/lists?fields=id,name&filter=all&{auth}")).await;
    let lists: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(lists[2], json!({ "id": LIST_ARCHIVED, "name": "Archive" }), "fields= keeps only those");
    // Labels: 50 unless a limit is given.
    for i in 0..60 {
        tr.add_label(BOARD_ID, &format!("Topic {i}"), None);
    }
    let (_, _, b, _) = get(&format!("/boards/{BOARD_ID}/labels?{auth}")).await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&b).unwrap().len(), 50);
    let (_, _, b, _) = get(&format!("/boards/{BOARD_ID}/labels?limit=1000&{auth}")).await;
    assert_eq!(serde_json::from_str::<Vec<Value>>(&b).unwrap().len(), 66);

    // 429: the contract's JSON, no Retry-After.
    tr.rate_limit(Some(RateLimits { window: Duration::from_secs(60), key_max: 100, token_max: 0, lockout_after: 100 }));
    let (s, ct, b, h) = get(&format!("/boards/{BOARD_ID}/lists?{auth}")).await;
    assert_eq!(
        (s, ct.as_str(), b.as_str()),
        (429, json_type, r#"{"error":"API_TOKEN_LIMIT_EXCEEDED","message":"Rate limit exceeded"}"#)
    );
    assert!(h.get("retry-after").is_none());
    tr.rate_limit(Some(RateLimits { window: Duration::from_secs(60), key_max: 0, token_max: 100, lockout_after: 100 }));
    let (_, _, b, _) = get(&format!("/boards/{BOARD_ID}/lists?{auth}")).await;
    assert_eq!(b, r#"{"error":"API_KEY_LIMIT_EXCEEDED","message":"Rate limit exceeded"}"#);
    tr.rate_limit(Some(RateLimits::CONTRACT));

    // The OAuth header form of the credentials is accepted too.
    let oauth = format!(r#"OAuth oauth_consumer_key="{KEY}", oauth_token="{TOKEN}""#);
    let (s, _, _, _) = raw(Method::GET, format!("{base}/boards/{BOARD_ID}/lists"), None, Some(&oauth)).await;
    assert_eq!(s, 200);

    // Card creation in the query-string form: 200 (not 201), the full card back.
    let query = format!(
        "idList={LIST_INBOX}&name=Call%20me%20back%2C%20please&idLabels={LABEL_CALLBACK},{LABEL_BUG}&pos=top&due=2026-01-15T18:00:00%2B01:00&{auth}"
    );
    let (s, ct, b, _) = raw(Method::POST, format!("{base}/cards?{query}"), None, None).await;
    assert_eq!((s, ct.as_str()), (200, json_type));
    let card: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(card["name"], "Call me back, please");
    assert_eq!(card["idShort"], 1);
    assert_eq!(card["due"], "2026-01-15T17:00:00.000Z");
    assert_eq!(card["pos"], 8192);
    assert_eq!(
        card["labels"][0],
        json!({ "id": LABEL_BUG, "idBoard": BOARD_ID, "name": "Bug", "color": "red", "uses": 1 })
    );
    assert_eq!(
        card["url"],
        format!("https://trello.com/c/{}/1-call-me-back-please", card["shortLink"].as_str().unwrap())
    );
    assert_eq!(card["badges"]["attachments"], 0);
    // …and the JSON form with labels as an array and an attached URL.
    let body = json!({ "idList": LIST_INBOX, "name": "Quote", "idLabels": [LABEL_QUOTE], "urlSource": "https://shop.example/c/1" });
    let (s, _, b, _) = post(auth.clone(), body).await;
    assert_eq!(s, 200);
    let card: Value = serde_json::from_str(&b).unwrap();
    assert_eq!((card["idLabels"].clone(), card["badges"]["attachments"].clone()), (json!([LABEL_QUOTE]), json!(1)));
    assert_eq!(tr.cards()[1].url_source.as_deref(), Some("https://shop.example/c/1"));
    let (s, _, b, _) = post(auth.clone(), json!({ "idList": LIST_INBOX, "urlSource": "ftp://x" })).await;
    assert_eq!((s, b.as_str()), (400, "invalid value for urlSource"));
}

#[test]
fn trello_fake_dates_and_slugs() {
    assert_eq!(fake::normalize_date("2026-01-15T17:00:00.000Z").as_deref(), Some("2026-01-15T17:00:00.000Z"));
    assert_eq!(fake::normalize_date("2026-01-15T17:00Z").as_deref(), Some("2026-01-15T17:00:00.000Z"));
    assert_eq!(fake::normalize_date("2026-01-15T23:30:05.5-02:00").as_deref(), Some("2026-01-16T01:30:05.500Z"));
    assert_eq!(fake::normalize_date("2026-01-15").as_deref(), Some("2026-01-15T00:00:00.000Z"));
    assert_eq!(fake::normalize_date("2026-02-30T10:00:00Z"), None);
    assert_eq!(fake::normalize_date("tomorrow"), None);
    assert_eq!(fake::slug("Customer asks about bulk discount!"), "customer-asks-about-bulk-discount");
    assert_eq!(fake::slug("  Ärger -- mit   Lampe "), "ärger-mit-lampe");
}

#[tokio::test]
async fn trello_client_settings_point_at_the_fake() {
    let tr = FakeTrello::start().await;
    let pairs = tr.client_settings();
    let get = |key: &str| -> String {
        let (_, value) = pairs.iter().filter_map(|p| p.split_once('=')).find(|(k, _)| *k == key).unwrap();
        let def = settings::find(key).unwrap_or_else(|| panic!("{key} is a setting"));
        let normalized = normalize(def, value, UpstreamPolicy::default()).unwrap().unwrap();
        assert_eq!(normalized, value, "{key} is stored as given");
        normalized
    };
    let config = TrelloConfig {
        base: url::Url::parse(&get("trello_api_url")).unwrap(),
        key: get("trello_key"),
        token: get("trello_token"),
    };
    let (board, list) = (get("trello_board_id"), get("trello_list_id"));
    assert!(settings::find("trello_key").unwrap().secret() && settings::find("trello_token").unwrap().secret());
    let client = Trello::new(config, http()).unwrap();
    let lists = client.lists(&board).await.unwrap();
    assert!(lists.iter().any(|l| l.id == list));
    assert_eq!(pairs.len(), 5);
}
