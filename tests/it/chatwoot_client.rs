//! The Chatwoot client against the fake Chatwoot (`chatwoot_fake`): each call's request as the
//! contract prescribes it, the answers read, and every failure classified — with the tokens
//! never showing in an error. Also: the fake's webhooks mean what the contract says.

use std::time::Duration;

use aia_chat::clients::UpstreamPolicy;
use aia_chat::operator::chatwoot::{
    Chatwoot, ChatwootConfig, ChatwootError, Contact, Direction, NewContact, NewConversation, NewMessage,
    conversation_body, message_body,
};
use aia_chat::operator::signature;
use aia_chat::operator::webhook::{Effect, MessageType, Owner, Webhook};
use serde_json::{Value, json};

use crate::chatwoot_fake::{
    self as fake, ACCOUNT_ID, ADMIN_TOKEN, BOT_TOKEN, Delivery, Failure, FakeChatwoot, INBOX_ID, INBOX_SECRET,
    WebhookConv, WebhookSink,
};

fn http() -> reqwest::Client {
    Chatwoot::http_client(UpstreamPolicy::default())
}

fn new_contact(session: &str, identifier: Option<&str>) -> NewContact {
    NewContact {
        inbox_id: INBOX_ID,
        source_id: session.into(),
        identifier: identifier.map(str::to_string),
        name: None,
        custom_attributes: json!({ "visitor_name": "Dana (unverified)", "visitor_email": "dana@example.org" }),
    }
}

/// A contact with a conversation, the usual start of every hand-over.
async fn conversation(cw: &Chatwoot, session: &str) -> (Contact, i64) {
    let contact = cw.create_contact(&new_contact(session, None)).await.unwrap();
    let conv = cw
        .create_conversation(&NewConversation {
            inbox_id: INBOX_ID,
            contact_id: contact.id,
            source_id: contact.source_id.clone().unwrap(),
            additional_attributes: Value::Null,
            custom_attributes: Value::Null,
            first_message: None,
        })
        .await
        .unwrap();
    (contact, conv.id)
}

fn assert_no_tokens(e: &ChatwootError) {
    for shown in [e.to_string(), format!("{e:?}")] {
        for token in [ADMIN_TOKEN, BOT_TOKEN, INBOX_SECRET] {
            assert!(!shown.contains(token), "a secret shows in {shown}");
        }
    }
}

#[tokio::test]
async fn chatwoot_profile_gives_the_tokens_single_account() {
    let cw = FakeChatwoot::start().await;
    assert_eq!(Chatwoot::profile_account(&http(), &cw.url(), ADMIN_TOKEN).await, Ok(ACCOUNT_ID));
    let seen = cw.seen();
    assert_eq!((seen[0].method.as_str(), seen[0].path.as_str()), ("GET", "/api/v1/profile"));
    assert_eq!(seen[0].token(), Some(ADMIN_TOKEN), "the token goes in api_access_token, exactly");

    cw.set_profile_accounts(&[2, 3]);
    let e = Chatwoot::profile_account(&http(), &cw.url(), ADMIN_TOKEN).await.unwrap_err();
    assert_eq!(e, ChatwootError::Invalid("the token has several accounts: set operator_account_id".into()));
    cw.set_profile_accounts(&[]);
    let e = Chatwoot::profile_account(&http(), &cw.url(), ADMIN_TOKEN).await.unwrap_err();
    assert!(matches!(e, ChatwootError::Invalid(_)) && !e.retryable(), "{e}");

    let e = Chatwoot::profile_account(&http(), &cw.url(), "not-a-token").await.unwrap_err();
    assert_eq!(e, ChatwootError::Unauthorized("Invalid Access Token".into()));
    let e = Chatwoot::profile_account(&http(), &cw.url(), BOT_TOKEN).await.unwrap_err();
    assert_eq!(e, ChatwootError::Unauthorized("Access to this endpoint is not authorized for bots".into()));
    assert_no_tokens(&e);
}

#[tokio::test]
async fn chatwoot_inbox_secret_is_read_and_other_channels_refused() {
    let cw = FakeChatwoot::start().await;
    let client = cw.client();
    let inbox = client.inbox(INBOX_ID).await.unwrap();
    assert_eq!(inbox.channel_type, "Channel::Api");
    assert_eq!(inbox.secret.as_deref(), Some(INBOX_SECRET));
    assert!(inbox.inbox_identifier.is_some());
    assert!(inbox.ensure_api().is_ok());
    assert!(!format!("{inbox:?}").contains(INBOX_SECRET), "the secret is redacted in Debug");
    assert_eq!(cw.seen()[0].path, format!("/api/v1/accounts/{ACCOUNT_ID}/inboxes/{INBOX_ID}"));

    cw.add_inbox(9, "Channel::WebWidget", None);
    let widget = client.inbox(9).await.unwrap();
    assert_eq!(widget.secret, None);
    let e = widget.ensure_api().unwrap_err();
    assert!(matches!(&e, ChatwootError::Invalid(m) if m.contains("Channel::WebWidget") && m.contains("Channel::Api")));

    cw.set_inbox_secret(INBOX_ID, None);
    assert_eq!(client.inbox(INBOX_ID).await.unwrap().secret, None, "an inbox without a secret (old server)");
    assert_eq!(client.inbox(404).await, Err(ChatwootError::NotFound));
}

#[tokio::test]
async fn chatwoot_contacts_are_found_or_created() {
    let cw = FakeChatwoot::start().await;
    let client = cw.client();

    // Unknown: filter, then create with a session in our inbox.
    let new = new_contact("aia-s-1", Some("user-88412"));
    let made = client.find_or_create_contact(&new).await.unwrap();
    assert_eq!(made.source_id.as_deref(), Some("aia-s-1"));
    let seen = cw.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/api/v1/accounts/2/contacts/filter", "/api/v1/accounts/2/contacts"]);
    assert_eq!(
        seen[0].body,
        json!({ "payload": [ { "attribute_key": "identifier", "filter_operator": "equal_to",
                               "values": ["user-88412"], "query_operator": null } ] })
    );
    assert_eq!(
        seen[1].body,
        json!({ "inbox_id": 7, "source_id": "aia-s-1", "identifier": "user-88412",
                "custom_attributes": { "visitor_name": "Dana (unverified)", "visitor_email": "dana@example.org" } })
    );
    assert_eq!(seen[1].body.get("email"), None, "a visitor-typed email never goes into email");
    assert!(seen.iter().all(|s| s.token() == Some(ADMIN_TOKEN)));

    // Known: found by the filter, with its session.
    cw.clear_seen();
    let again = client.find_or_create_contact(&new_contact("aia-s-2", Some("user-88412"))).await.unwrap();
    assert_eq!(again, made, "the existing contact and its session");
    assert_eq!(cw.seen().len(), 1);
    assert_eq!(client.find_contact("USER-88412").await.unwrap(), None, "the match is exact");

    // Created elsewhere, without a session in our inbox: one is added.
    let other = cw.add_contact(Some("user-7"), Some("Kim"));
    cw.clear_seen();
    let found = client.find_or_create_contact(&new_contact("aia-s-3", Some("user-7"))).await.unwrap();
    assert_eq!(found, Contact { id: other, source_id: Some("aia-s-3".into()) });
    let add = &cw.seen()[1];
    assert_eq!(add.path, format!("/api/v1/accounts/2/contacts/{other}/contact_inboxes"));
    assert_eq!(add.body, json!({ "inbox_id": 7, "source_id": "aia-s-3" }));

    // A duplicate identifier is 422; found-or-create handles it by looking again (another
    // server created the contact between our lookup and our create).
    let e = client.create_contact(&new_contact("aia-s-4", Some("user-88412"))).await.unwrap_err();
    assert_eq!(e, ChatwootError::Invalid("Identifier has already been taken".into()));
    assert!(!e.retryable());
    cw.fail_next_with(
        1,
        Failure::answer(200, "application/json", r#"{"meta":{"count":0,"current_page":1},"payload":[]}"#),
    );
    cw.clear_seen();
    let raced = client.find_or_create_contact(&new_contact("aia-s-5", Some("user-88412"))).await.unwrap();
    assert_eq!(raced, made);
    let paths: Vec<String> = cw.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        paths,
        ["/api/v1/accounts/2/contacts/filter", "/api/v1/accounts/2/contacts", "/api/v1/accounts/2/contacts/filter"]
    );
    assert_eq!(cw.contacts().len(), 2);

    // Anonymous visitors: created directly, Chatwoot keeps our session id.
    let anon = client.find_or_create_contact(&new_contact("aia-s-6", None)).await.unwrap();
    assert_eq!(anon.source_id.as_deref(), Some("aia-s-6"));
}

#[tokio::test]
async fn chatwoot_conversations_start_pending_with_their_attributes() {
    let cw = FakeChatwoot::start().await;
    let client = cw.client();
    let contact = client.create_contact(&new_contact("aia-s-1", None)).await.unwrap();
    let new = NewConversation {
        inbox_id: INBOX_ID,
        contact_id: contact.id,
        source_id: "aia-s-1".into(),
        additional_attributes: json!({ "origin": "aia-chat", "page": "/pricing" }),
        custom_attributes: json!({ "aia_conversation": "c_5f1c" }),
        first_message: Some("Hi, I need help with my invoice".into()),
    };
    let conv = client.create_conversation(&new).await.unwrap();
    assert_eq!(conv.status, "pending");
    assert_eq!(conv.inbox_id, Some(INBOX_ID));
    assert_eq!(conv.custom_attributes, json!({ "aia_conversation": "c_5f1c" }));
    let sent = cw.seen().pop().unwrap();
    assert_eq!(sent.body, conversation_body(&new));
    assert_eq!(
        sent.body["message"],
        json!({ "content": "Hi, I need help with my invoice", "message_type": "incoming" })
    );

    let stored = cw.conversation(conv.id).unwrap();
    assert_eq!(stored.additional_attributes, json!({ "origin": "aia-chat", "page": "/pricing" }));
    assert_eq!(cw.contact_inboxes().len(), 1, "the session is reused, not minted again");
    let first = &cw.messages(conv.id)[0];
    assert_eq!((first.message_type, first.content.as_deref()), (0, Some("Hi, I need help with my invoice")));

    assert_eq!(client.conversation(conv.id).await.unwrap().status, "pending");
    let listed = client.conversations_of_contact(contact.id).await.unwrap();
    assert_eq!(listed.iter().map(|c| c.id).collect::<Vec<_>>(), [conv.id]);
    assert_eq!(cw.seen().pop().unwrap().path, format!("/api/v1/accounts/2/contacts/{}/conversations", contact.id));
    assert_eq!(client.conversations_of_contact(99_999).await, Err(ChatwootError::NotFound));

    // Without the bot on the inbox it is still created pending: the AI has it first.
    cw.set_bot_connected(INBOX_ID, false);
    let second = client.create_conversation(&NewConversation { first_message: None, ..new }).await.unwrap();
    assert_eq!(second.status, "pending");
    assert_eq!(client.conversation(424_242).await, Err(ChatwootError::NotFound));
}

#[tokio::test]
async fn chatwoot_messages_carry_our_source_id_once() {
    let cw = FakeChatwoot::start().await;
    let client = cw.client();
    let (_, conv) = conversation(&client, "aia-s-1").await;
    let incoming = NewMessage {
        content: "It says I was charged twice".into(),
        message_type: Direction::Incoming,
        private: false,
        source_id: Some("aia-m-431".into()),
    };
    let id = client.post_message(conv, &incoming, false).await.unwrap();
    let sent = cw.seen().pop().unwrap();
    assert_eq!(sent.path, format!("/api/v1/accounts/2/conversations/{conv}/messages"));
    assert_eq!(
        sent.body,
        json!({ "content": "It says I was charged twice", "message_type": "incoming", "source_id": "aia-m-431" })
    );
    assert_eq!(sent.token(), Some(ADMIN_TOKEN));

    // Posting it again (after an ambiguous failure) is refused…
    let e = client.post_message(conv, &incoming, false).await.unwrap_err();
    assert_eq!(e, ChatwootError::Invalid("source_id should be unique".into()));
    assert!(!e.retryable());
    // …and the messages list shows it was there.
    let listed = client.messages_after(conv, None).await.unwrap();
    let mine = listed.iter().find(|m| m.source_id.as_deref() == Some("aia-m-431")).unwrap();
    assert_eq!((mine.id, mine.message_type, mine.private), (id, MessageType::Incoming, false));

    // The AI's answer as the bot, then a private hand-off note.
    let answer = NewMessage {
        content: "I can see two charges on 3 June".into(),
        message_type: Direction::Outgoing,
        private: false,
        source_id: Some("aia-m-432".into()),
    };
    let answer_id = client.post_message(conv, &answer, true).await.unwrap();
    assert_eq!(cw.seen().pop().unwrap().token(), Some(BOT_TOKEN));
    let note = NewMessage {
        content: "AI hand-off: disputes a double charge".into(),
        message_type: Direction::Outgoing,
        private: true,
        source_id: None,
    };
    client.post_message(conv, &note, true).await.unwrap();
    assert_eq!(cw.seen().pop().unwrap().body, message_body(&note));
    let after = client.messages_after(conv, Some(id)).await.unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!((after[0].id, after[0].message_type), (answer_id, MessageType::Outgoing));
    assert!(after[1].private);
    assert_eq!(cw.seen().pop().unwrap().path, format!("/api/v1/accounts/2/conversations/{conv}/messages?after={id}"));
    assert_eq!(cw.seen().pop().unwrap().token(), Some(ADMIN_TOKEN), "bots may not list messages");

    // Unknown conversations are 404; a non-API inbox takes no incoming messages.
    assert_eq!(client.post_message(999, &incoming, false).await, Err(ChatwootError::NotFound));
    cw.add_inbox(9, "Channel::WebWidget", None);
    let widget_contact = client.create_contact(&NewContact { inbox_id: 9, ..new_contact("w-1", None) }).await.unwrap();
    let widget_conv = client
        .create_conversation(&NewConversation {
            inbox_id: 9,
            contact_id: widget_contact.id,
            source_id: "w-1".into(),
            additional_attributes: Value::Null,
            custom_attributes: Value::Null,
            first_message: None,
        })
        .await
        .unwrap();
    let e = client.post_message(widget_conv.id, &incoming, false).await.unwrap_err();
    assert_eq!(e, ChatwootError::Invalid("Incoming messages are only allowed in Api inboxes".into()));
}

#[tokio::test]
async fn chatwoot_hand_off_and_typing_use_the_bot_token() {
    let cw = FakeChatwoot::start().await;
    let client = cw.client();
    let (_, conv) = conversation(&client, "aia-s-1").await;
    assert_eq!(client.toggle_status(conv, "open", true).await.unwrap(), "open");
    let sent = cw.seen().pop().unwrap();
    assert_eq!(sent.path, format!("/api/v1/accounts/2/conversations/{conv}/toggle_status"));
    assert_eq!(sent.body, json!({ "status": "open" }));
    assert_eq!(sent.token(), Some(BOT_TOKEN));
    let stored = cw.conversation(conv).unwrap();
    assert_eq!((stored.status.as_str(), stored.toggled_by.as_deref()), ("open", Some("agent_bot")));

    client.toggle_typing(conv, true).await.unwrap();
    let sent = cw.seen().pop().unwrap();
    assert_eq!(sent.path, format!("/api/v1/accounts/2/conversations/{conv}/toggle_typing_status"));
    assert_eq!((sent.body.clone(), sent.token()), (json!({ "typing_status": "on" }), Some(BOT_TOKEN)));
    assert_eq!(cw.conversation(conv).unwrap().typing, Some(true));
    client.toggle_typing(conv, false).await.unwrap();
    assert_eq!(cw.conversation(conv).unwrap().typing, Some(false));
    assert_eq!(client.toggle_status(conv, "pending", false).await.unwrap(), "pending");
    assert_eq!(cw.seen().pop().unwrap().token(), Some(ADMIN_TOKEN));

    // Without a bot token, "as the bot" falls back to the admin token.
    let no_bot = Chatwoot::new(ChatwootConfig { bot_token: None, ..cw.config() }, http()).unwrap();
    assert_eq!(no_bot.toggle_status(conv, "open", true).await.unwrap(), "open");
    assert_eq!(cw.seen().pop().unwrap().token(), Some(ADMIN_TOKEN));
    assert_eq!(cw.conversation(conv).unwrap().toggled_by.as_deref(), Some("user"));

    // A bot token where an admin token belongs is a configuration error.
    let swapped = Chatwoot::new(ChatwootConfig { admin_token: BOT_TOKEN.into(), ..cw.config() }, http()).unwrap();
    let e = swapped.messages_after(conv, None).await.unwrap_err();
    assert_eq!(e, ChatwootError::Unauthorized("Access to this endpoint is not authorized for bots".into()));
    assert_no_tokens(&e);
}

#[tokio::test]
async fn chatwoot_failures_are_classified() {
    let cw = FakeChatwoot::start().await;
    let client = cw.client().with_timeout(Duration::from_millis(500));
    let (_, conv) = conversation(&client, "aia-s-1").await;
    let mut errors = Vec::new();

    let wrong = Chatwoot::new(ChatwootConfig { admin_token: "wrong-token-123".into(), ..cw.config() }, http()).unwrap();
    let e = wrong.inbox(INBOX_ID).await.unwrap_err();
    assert_eq!(e, ChatwootError::Unauthorized("Invalid Access Token".into()));
    assert!(!e.retryable(), "401 is a configuration error");
    errors.push(e);

    cw.fail_next(1, 500);
    let e = client.conversation(conv).await.unwrap_err();
    assert!(matches!(&e, ChatwootError::Unavailable(m) if m.contains("500")) && e.retryable(), "{e}");
    errors.push(e);
    cw.fail_next(1, 503);
    let e = client.conversation(conv).await.unwrap_err();
    assert!(matches!(&e, ChatwootError::Unavailable(m) if m.contains("503")) && e.retryable(), "{e}");
    errors.push(e);

    cw.fail_next_with(1, Failure::status(429).header("retry-after", "7"));
    let e = client.toggle_typing(conv, true).await.unwrap_err();
    assert_eq!(e, ChatwootError::RateLimited { retry_after: Some(Duration::from_secs(7)) });
    assert!(e.retryable());
    errors.push(e);

    cw.rate_limit(Some((2, Duration::from_secs(60))), None);
    client.conversation(conv).await.unwrap();
    client.conversation(conv).await.unwrap();
    let e = client.conversation(conv).await.unwrap_err();
    assert_eq!(e, ChatwootError::RateLimited { retry_after: None });
    assert_eq!(e.to_string(), "Chatwoot is rate limiting (HTTP 429)");
    cw.rate_limit(None, None);
    errors.push(e);

    cw.fail_next(1, 404);
    assert_eq!(client.conversation(conv).await, Err(ChatwootError::NotFound));

    cw.fail_next_with(1, Failure::answer(200, "text/html", "<html>maintenance</html>"));
    let e = client.conversation(conv).await.unwrap_err();
    assert!(matches!(&e, ChatwootError::Protocol(m) if m.contains("maintenance")) && !e.retryable(), "{e}");
    errors.push(e);

    cw.fail_next_with(1, Failure::stall(Duration::from_secs(2)));
    let e = client.conversation(conv).await.unwrap_err();
    assert!(matches!(&e, ChatwootError::Unavailable(m) if m.contains("within")) && e.retryable(), "{e}");
    errors.push(e);

    // Down: connections refused (and the pooled one dropped); up again on the same port.
    cw.down().await;
    let e = client.conversation(conv).await.unwrap_err();
    assert!(matches!(e, ChatwootError::Unavailable(_)) && e.retryable(), "{e}");
    errors.push(e);
    let e = client
        .post_message(
            conv,
            &NewMessage { content: "x".into(), message_type: Direction::Incoming, private: false, source_id: None },
            false,
        )
        .await
        .unwrap_err();
    assert!(e.retryable(), "{e}");
    errors.push(e);
    cw.up().await;
    assert_eq!(client.conversation(conv).await.unwrap().id, conv);

    for e in &errors {
        assert_no_tokens(e);
    }
    let shown = format!("{client:?}");
    assert!(!shown.contains(ADMIN_TOKEN) && !shown.contains(BOT_TOKEN), "{shown}");
}

#[tokio::test]
async fn chatwoot_fake_echoes_our_posts_as_signed_webhooks() {
    let cw = FakeChatwoot::start().await;
    let sink = WebhookSink::start().await;
    cw.set_echo(Some(&sink.url));
    let client = cw.client();
    let (_, conv) = conversation(&client, "aia-s-1").await;
    let answer = NewMessage {
        content: "Here is your invoice".into(),
        message_type: Direction::Outgoing,
        private: false,
        source_id: Some("aia-m-9".into()),
    };
    let id = client.post_message(conv, &answer, true).await.unwrap();
    let echoes = cw.wait_echoes(1).await;
    assert_eq!((echoes[0].event.as_str(), echoes[0].status), ("message_created", Some(200)));
    let got = sink.received().pop().unwrap();
    let header = |name: &str| got.headers.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(header("x-chatwoot-delivery").map(str::len), Some(36));
    let now = fake::now();
    signature::verify(INBOX_SECRET, header("x-chatwoot-timestamp"), header("x-chatwoot-signature"), &got.body, now)
        .unwrap();
    let webhook: Webhook = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(webhook.id, Some(id));
    assert_eq!(webhook.address().conversation_id, Some(conv));
    assert_eq!(webhook.address().source_id.as_deref(), Some("aia-s-1"));
    assert_eq!(webhook.sender.as_ref().and_then(|s| s.kind.as_deref()), Some("agent_bot"));
    assert_eq!(webhook.effect(), Effect::Ignore("the echo of our own post"));

    // Without an echo URL, nothing is sent.
    cw.set_echo(None);
    client.post_message(conv, &NewMessage { source_id: Some("aia-m-10".into()), ..answer }, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(cw.echoes().len(), 1);
}

#[tokio::test]
async fn chatwoot_fake_webhooks_mean_what_the_contract_says() {
    let cw = FakeChatwoot::start().await;
    let client = cw.client();
    let (_, conv) = conversation(&client, "aia-s-1").await;
    let at = cw.webhook_conv(conv);
    let parse = |v: &Value| serde_json::from_value::<Webhook>(v.clone()).unwrap();

    let reply = cw.agent_writes(conv, "Hi Dana, I'm Sam");
    let Effect::Reply(r) = parse(&reply).effect() else { panic!("{reply}") };
    assert_eq!((r.text.as_str(), r.operator_name.as_deref()), ("Hi Dana, I'm Sam", Some("Sam Agent")));
    assert_eq!(parse(&reply).address().source_id.as_deref(), Some("aia-s-1"));
    let int = parse(&fake::integer_message_type(reply.clone()));
    assert_eq!(int.message_type, Some(MessageType::Outgoing));
    assert!(matches!(int.effect(), Effect::Reply(_)));
    assert_eq!(parse(&fake::private_note(&at, 1, "internal")).effect(), Effect::Ignore("a private note"));
    assert_eq!(
        parse(&fake::template_message(&at, 2, "We are away")).effect(),
        Effect::Notice { message_id: 2, text: "We are away".into() }
    );
    assert_eq!(
        parse(&fake::incoming_echo(&at, 3, "hello", Some("aia-m-1"))).effect(),
        Effect::Ignore("the visitor's own message")
    );
    assert_eq!(parse(&fake::typing(&at, true, false)).effect(), Effect::Typing(true));
    assert_eq!(parse(&fake::typing(&at, false, false)).effect(), Effect::Typing(false));
    assert_eq!(parse(&fake::typing(&at, true, true)).effect(), Effect::Ignore("typing a private note"));
    for (status, owner) in [("open", Owner::Human), ("pending", Owner::Bot), ("resolved", Owner::Resolved)] {
        let changed = cw.agent_sets_status(conv, status);
        assert_eq!(changed["changed_attributes"], Value::Null);
        assert_eq!(parse(&changed).effect(), Effect::Status(owner));
        assert_eq!(parse(&changed).address().conversation_id, Some(conv));
    }
    let example = fake::agent_reply(&WebhookConv::example("open"), 90230, "x");
    assert_eq!(parse(&example).address().source_id.as_deref(), Some("asst-session-5f1c"));

    // Delivery: signed, forged, stale, unsigned, duplicated — as received.
    let sink = WebhookSink::start().await;
    let body = serde_json::to_vec(&reply).unwrap();
    let check = |r: &fake::Received| {
        let h = |n: &str| r.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        (
            h("x-chatwoot-delivery").unwrap(),
            signature::verify(
                INBOX_SECRET,
                h("x-chatwoot-timestamp").as_deref(),
                h("x-chatwoot-signature").as_deref(),
                &r.body,
                fake::now(),
            ),
        )
    };
    let first = fake::deliver(&sink.url, &body, &Delivery::signed(INBOX_SECRET)).await;
    assert_eq!(first.status, Some(200));
    fake::deliver(&sink.url, &body, &Delivery::signed(INBOX_SECRET).with_id(&first.delivery_id)).await;
    fake::deliver(&sink.url, &body, &Delivery::forged()).await;
    fake::deliver(&sink.url, &body, &Delivery::signed(INBOX_SECRET).stale()).await;
    fake::deliver(&sink.url, &body, &Delivery::unsigned()).await;
    let got: Vec<_> = sink.received().iter().map(check).collect();
    assert_eq!(got[0], (first.delivery_id.clone(), Ok(())));
    assert_eq!(got[1], (first.delivery_id.clone(), Ok(())), "a duplicate: same delivery id");
    assert_eq!(got[2].1, Err(signature::SignatureError::Mismatch));
    assert_eq!(got[3].1, Err(signature::SignatureError::Stale));
    assert_eq!(got[4].1, Err(signature::SignatureError::Unsigned));
    assert_eq!(sink.received()[0].body, body, "the exact bytes");
}

#[tokio::test]
async fn chatwoot_redirects_to_another_host_are_not_followed() {
    // Our token travels in `api_access_token`, a header reqwest doesn't know is secret: a
    // redirect to another host must not carry it there.
    let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = elsewhere.local_addr().unwrap().port();
    let (hit_tx, mut hit) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = elsewhere.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await.unwrap_or(0);
            let _ = hit_tx.send(String::from_utf8_lossy(&buf[..n]).to_string());
        }
    });
    let cw = FakeChatwoot::start().await;
    cw.fail_next_with(1, Failure::status(307).header("location", &format!("http://127.0.0.1:{port}/steal")));
    let result = cw.client().inbox(INBOX_ID).await;
    assert!(matches!(result, Err(ChatwootError::Protocol(_))), "{result:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(hit.try_recv().is_err(), "the other host was called");
}
