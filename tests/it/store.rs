//! The store conformance suite: the same checks on SQLite always and on PostgreSQL when
//! `TEST_DATABASE_URL` is set (each run gets its own fresh schema-less database).

use std::sync::Arc;

use aia_chat::store::{
    AdminRole, Attachment, Author, DayUsage, HandoffState, Inserted, KnowledgeEntry, NewMessage, NewTaskRecord,
    OperatorLink, OutboxItem, ProductCard, Role, SettingWrite, Store, StoreError, TaskState, TokenUsage, utc_day,
};

use crate::support::{count_run, loud_skip};

fn visitor(session: i64, id: &str, text: &str) -> NewMessage {
    NewMessage {
        session_id: session,
        role: Role::Visitor,
        text: text.into(),
        client_msg_id: Some(id.into()),
        reply_to: None,
        source: None,
        entry_id: None,
        created_at: 1_700_000_000_000,
        usage: None,
        author: None,
        attachments: Vec::new(),
        products: Vec::new(),
    }
}

async fn conformance(store: Arc<dyn Store>) {
    // meta: first value wins.
    assert_eq!(store.meta_init("fp", "a").await.unwrap(), "a");
    assert_eq!(store.meta_init("fp", "b").await.unwrap(), "a");

    // clients
    let c = store.client_create("shop", 1).await.unwrap();
    assert!(matches!(store.client_create("shop", 2).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.client_get("shop").await.unwrap().unwrap(), c);
    assert!(store.client_get("none").await.unwrap().is_none());
    store.client_create("another", 1).await.unwrap();
    let uids: Vec<String> = store.client_list().await.unwrap().into_iter().map(|c| c.uid).collect();
    assert_eq!(uids, ["another", "shop"]);

    // settings: atomic writes, deletes, version bump
    let w = |k: &str, v: Option<&str>| SettingWrite { key: k.into(), value: v.map(Into::into) };
    store.settings_put(c.id, &[w("bot_name", Some("A")), w("greeting", Some("Hi"))]).await.unwrap();
    store.settings_put(c.id, &[w("bot_name", Some("B")), w("greeting", None)]).await.unwrap();
    let s = store.settings_get(c.id).await.unwrap();
    assert_eq!(s.len(), 1);
    assert_eq!((s[0].key.as_str(), s[0].value.as_str()), ("bot_name", "B"));
    let after = store.client_get("shop").await.unwrap().unwrap();
    assert_eq!(after.settings_version, c.settings_version + 2);
    assert!(matches!(store.settings_put(9_999, &[]).await, Err(StoreError::NotFound(_))));

    // knowledge: replace keeps order and bumps the version
    let e = |id: &str| KnowledgeEntry {
        id: id.into(),
        question: format!("q {id}"),
        answer: format!("a {id}"),
        category: Some("c".into()),
        url: None,
        variants: vec![format!("v {id}"), "other".into()],
    };
    let first = store.knowledge_replace(c.id, &[e("2"), e("1")]).await.unwrap();
    assert_eq!((first.changed, first.added), (true, 2));
    let w = store.knowledge_replace(c.id, &[e("3"), e("1"), e("2")]).await.unwrap();
    assert_eq!((w.added, w.unchanged, w.removed), (1, 2, 0));
    let ids: Vec<String> = store.knowledge_list(c.id).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["3", "1", "2"]);
    // The same entries again write nothing and leave the version alone.
    let same = store.knowledge_replace(c.id, &[e("3"), e("1"), e("2")]).await.unwrap();
    assert!(!same.changed);
    assert_eq!(store.knowledge_list(c.id).await.unwrap()[0], e("3"), "every field round-trips");
    // A changed and a removed entry; more than one batch of rows.
    let mut changed = e("1");
    changed.answer = "new".into();
    let w = store.knowledge_replace(c.id, &[changed.clone(), e("3")]).await.unwrap();
    assert_eq!((w.updated, w.removed, w.unchanged), (1, 1, 1));
    assert_eq!(store.knowledge_list(c.id).await.unwrap(), [changed, e("3")]);
    let many: Vec<_> = (0..2_500).map(|i| e(&format!("m{i}"))).collect();
    store.knowledge_replace(c.id, &many).await.unwrap();
    assert_eq!(store.knowledge_list(c.id).await.unwrap().len(), 2_500);
    store.knowledge_replace(c.id, &[e("3"), e("1"), e("2")]).await.unwrap();
    assert_eq!(store.client_get("shop").await.unwrap().unwrap().knowledge_version, c.knowledge_version + 5);

    // training lease: one owner at a time until it expires or is released
    assert!(store.training_status(c.id).await.unwrap().is_none());
    assert!(store.training_lease(c.id, "a", 1_000, 2_000).await.unwrap());
    assert!(!store.training_lease(c.id, "b", 1_500, 2_500).await.unwrap(), "held by a");
    store.training_progress(c.id, "a", 3, 300, 3_000).await.unwrap();
    store.training_progress(c.id, "b", 9, 900, 9_000).await.unwrap();
    let t = store.training_status(c.id).await.unwrap().unwrap();
    assert_eq!((t.lease_owner.as_str(), t.pages, t.entries, t.lease_until), ("a", 3, 300, 3_000));
    assert!(t.running(2_000) && !t.running(3_000));
    assert!(!store.training_lease(c.id, "b", 2_999, 4_000).await.unwrap());
    assert!(store.training_lease(c.id, "b", 3_000, 4_000).await.unwrap(), "an expired lease is taken over");
    store.training_finish(c.id, "b", 3_500, Err("page 2: boom")).await.unwrap();
    let t = store.training_status(c.id).await.unwrap().unwrap();
    assert_eq!(
        (t.last_error.as_deref(), t.last_error_at, t.running(3_600)),
        (Some("page 2: boom"), Some(3_500), false)
    );
    assert!(store.training_lease(c.id, "c", 3_600, 5_000).await.unwrap(), "a finished run releases the lease");
    store.training_finish(c.id, "c", 3_700, Ok(42)).await.unwrap();
    let t = store.training_status(c.id).await.unwrap().unwrap();
    assert_eq!((t.last_success_at, t.entry_count, t.last_error), (Some(3_700), Some(42), None));
    // ... and both finished runs are in the history, newest first; a foreign owner adds none.
    store.training_finish(c.id, "nobody", 3_800, Ok(1)).await.unwrap();
    let runs = store.training_runs(c.id, 10).await.unwrap();
    let seen: Vec<_> = runs.iter().map(|r| (r.owner.as_str(), r.finished_at, r.entries, r.error.as_deref())).collect();
    assert_eq!(seen, [("c", 3_700, 42, None), ("b", 3_500, 0, Some("page 2: boom"))]);
    assert_eq!(store.training_runs(c.id, 1).await.unwrap().len(), 1);

    // sessions are found by token hash and client only
    let s1 = store.session_create(c.id, "hash-1", "c_1", 5).await.unwrap();
    assert_eq!(store.session_find(c.id, "hash-1").await.unwrap().unwrap(), s1);
    assert!(store.session_find(c.id + 1, "hash-1").await.unwrap().is_none());
    assert!(store.session_find(c.id, "hash-2").await.unwrap().is_none());

    // messages: dedupe on (session, client id), growing seq, paging
    let m1 = match store.message_insert(&visitor(s1.id, "x", "hello")).await.unwrap() {
        Inserted::New(m) => m,
        other => panic!("{other:?}"),
    };
    match store.message_insert(&visitor(s1.id, "x", "hello again")).await.unwrap() {
        Inserted::Duplicate(m) => assert_eq!(m, m1),
        other => panic!("{other:?}"),
    }
    let s2 = store.session_create(c.id, "hash-2", "c_2", 5).await.unwrap();
    assert!(matches!(store.message_insert(&visitor(s2.id, "x", "other session")).await.unwrap(), Inserted::New(_)));
    assert!(store.reply_to(s1.id, m1.seq).await.unwrap().is_none());
    let mut answer = visitor(s1.id, "", "answer");
    answer.client_msg_id = None;
    answer.role = Role::Assistant;
    answer.reply_to = Some(m1.seq);
    answer.source = Some("knowledge".into());
    answer.entry_id = Some("e1".into());
    let Inserted::New(a1) = store.message_insert(&answer).await.unwrap() else { panic!() };
    let Inserted::New(a2) = store.message_insert(&answer).await.unwrap() else { panic!("no client id, no dedupe") };
    assert!(a1.seq > m1.seq && a2.seq > a1.seq);
    assert_eq!(store.reply_to(s1.id, m1.seq).await.unwrap().unwrap(), a1);
    for i in 0..60 {
        store.message_insert(&visitor(s1.id, &format!("p{i}"), "page")).await.unwrap();
    }
    let (page, more) = store.messages_page(s1.id, None, 50).await.unwrap();
    assert_eq!(page.len(), 50);
    assert!(more);
    assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));
    let (older, more) = store.messages_page(s1.id, Some(page[0].seq), 50).await.unwrap();
    assert_eq!(older.len(), 13);
    assert!(!more);
    assert_eq!(older[0], m1);
    assert_eq!(older[1].role, Role::Assistant);
    assert_eq!(older[1].entry_id.as_deref(), Some("e1"));

    // a question with an answer known at once: both in one commit; a resend stores no answer
    let s3 = store.session_create(c.id, "hash-3", "c_3", 5).await.unwrap();
    let instant = NewMessage { session_id: s3.id, reply_to: None, ..answer.clone() };
    let (Inserted::New(q), Some(a)) =
        store.message_insert_answered(&visitor(s3.id, "q", "hours?"), &instant).await.unwrap()
    else {
        panic!("the question and its answer are stored")
    };
    assert_eq!((a.reply_to, a.seq > q.seq, a.role, a.text.as_str()), (Some(q.seq), true, Role::Assistant, "answer"));
    assert_eq!(store.reply_to(s3.id, q.seq).await.unwrap().unwrap(), a);
    let again = store.message_insert_answered(&visitor(s3.id, "q", "hours?"), &instant).await.unwrap();
    assert_eq!(again, (Inserted::Duplicate(q), None));
    assert_eq!(store.messages_page(s3.id, None, 10).await.unwrap().0.len(), 2, "no second answer");

    // many writers at once: every message stored once, each caller told its own seq
    let s4 = store.session_create(c.id, "hash-4", "c_4", 5).await.unwrap();
    let writes = (0..200).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.message_insert(&visitor(s4.id, &format!("w{i}"), &format!("m{i}"))).await })
    });
    let mut seqs = Vec::new();
    let all = tokio::time::timeout(std::time::Duration::from_secs(20), futures_util::future::join_all(writes));
    for (i, w) in all.await.expect("no write left waiting").into_iter().enumerate() {
        let Inserted::New(m) = w.unwrap().unwrap() else { panic!("new") };
        assert_eq!(m.text, format!("m{i}"));
        seqs.push(m.seq);
    }
    seqs.sort_unstable();
    seqs.dedup();
    let (stored, _) = store.messages_page(s4.id, None, 500).await.unwrap();
    assert_eq!((seqs.len(), stored.len()), (200, 200));

    // model usage: counted with the message, per client and UTC day, and per session
    let day = utc_day(1_700_000_000_000);
    assert_eq!(store.usage_day(c.id, day).await.unwrap(), DayUsage::default());
    assert_eq!(store.session_tokens(s1.id).await.unwrap(), 0);
    let mut model = answer.clone();
    model.source = Some("model".into());
    model.usage = Some(TokenUsage { prompt: 250, completion: 40 });
    store.message_insert(&model).await.unwrap();
    model.session_id = s2.id;
    model.usage = Some(TokenUsage { prompt: 100, completion: 10 });
    store.message_insert(&model).await.unwrap();
    let used = store.usage_day(c.id, day).await.unwrap();
    assert_eq!(used, DayUsage { answers: 2, tokens: TokenUsage { prompt: 350, completion: 50 } });
    assert_eq!(store.usage_day(c.id, day + 1).await.unwrap(), DayUsage::default(), "a new day starts at zero");
    assert_eq!((store.session_tokens(s1.id).await.unwrap(), store.session_tokens(s2.id).await.unwrap()), (290, 110));

    // the client's last model failure
    assert_eq!(store.model_error(c.id).await.unwrap(), None);
    store.model_error_record(c.id, 10, "HTTP 401").await.unwrap();
    store.model_error_record(c.id, 20, "timed out").await.unwrap();
    assert_eq!(store.model_error(c.id).await.unwrap(), Some((20, "timed out".to_string())));

    operator_conformance(store.as_ref(), c.id, s1.id, s2.id).await;
    task_conformance(store.as_ref(), c.id, s1.id).await;
    vector_conformance(store.as_ref(), c.id).await;
    admin_conformance(store.as_ref(), c.id).await;
    conversation_conformance(store.as_ref()).await;
    privacy_conformance(store.as_ref()).await;
    lease_conformance(store.as_ref()).await;
    store.ping().await.unwrap();
}

/// A periodic job's lease: one holder at a time, renewable by it, free once it ran out or
/// was given up.
async fn lease_conformance(store: &dyn Store) {
    assert!(store.lease_take("job", "node-a", 1_000, 16_000).await.unwrap(), "free: taken");
    assert!(!store.lease_take("job", "node-b", 2_000, 17_000).await.unwrap(), "held by another");
    assert!(store.lease_take("job", "node-a", 3_000, 18_000).await.unwrap(), "renewed by its holder");
    assert!(!store.lease_take("job", "node-b", 17_999, 32_999).await.unwrap(), "not yet run out");
    assert!(store.lease_take("job", "node-b", 18_000, 33_000).await.unwrap(), "ran out: taken over");
    assert!(!store.lease_take("job", "node-a", 19_000, 34_000).await.unwrap(), "the old holder lost it");
    assert!(store.lease_take("other", "node-a", 19_000, 34_000).await.unwrap(), "jobs are apart");
    store.lease_release("job", "node-a").await.unwrap();
    assert!(!store.lease_take("job", "node-c", 20_000, 35_000).await.unwrap(), "only the holder gives it up");
    store.lease_release("job", "node-b").await.unwrap();
    assert!(store.lease_take("job", "node-c", 20_000, 35_000).await.unwrap(), "given up: free");
}

/// The admin panel's conversation list: newest activity first, search in messages (with LIKE's
/// wildcards taken literally) or by conversation id, feedback and task counts, paging.
async fn conversation_conformance(store: &dyn Store) {
    let c = store.client_create("conversations", 1).await.unwrap();
    let a = store.session_create(c.id, "h-a", "c_aaa", 10).await.unwrap();
    let b = store.session_create(c.id, "h-b", "c_bbb", 20).await.unwrap();
    let silent = store.session_create(c.id, "h-s", "c_sss", 30).await.unwrap();
    let at = |m: NewMessage, t: i64| NewMessage { created_at: t, ..m };
    store.message_insert(&at(visitor(a.id, "a1", "Where is my ORDER?"), 100)).await.unwrap();
    let answer =
        NewMessage { role: Role::Assistant, client_msg_id: None, ..at(visitor(a.id, "x", "It ships today."), 110) };
    let Inserted::New(answer) = store.message_insert(&answer).await.unwrap() else { panic!("new") };
    assert!(store.message_feedback(a.id, answer.seq, Some(aia_chat::store::Feedback::Down)).await.unwrap());
    store.message_insert(&at(visitor(b.id, "b1", "100% cotton_shirt?"), 200)).await.unwrap();

    let list = store.conversations(c.id, "", 0, 10).await.unwrap();
    let ids: Vec<&str> = list.iter().map(|s| s.session.conversation_id.as_str()).collect();
    assert_eq!(ids, ["c_bbb", "c_aaa"], "newest activity first; silent sessions left out");
    let first = &list[1];
    assert_eq!((first.last_at, first.messages, first.feedback_up, first.feedback_down), (110, 2, 0, 1));
    assert_eq!((first.first_question.as_deref(), first.handoff, first.tasks), (Some("Where is my ORDER?"), None, 0));
    let found = |q: &'static str| async move {
        store.conversations(c.id, q, 0, 10).await.unwrap().into_iter().map(|s| s.session.id).collect::<Vec<_>>()
    };
    assert_eq!(found("my order").await, [a.id], "case-insensitive");
    assert_eq!(found("100%").await, [b.id]);
    assert_eq!(found("0% c").await, [b.id]);
    assert_eq!(found("%").await, [b.id], "a % is a literal");
    assert_eq!(found("n_shirt").await, [b.id]);
    assert!(found("%_c").await.is_empty(), "wildcards are literals");
    assert!(found("my_order").await.is_empty(), "an _ is a literal");
    assert_eq!(found("c_aaa").await, [a.id], "by conversation id");
    assert_eq!(store.conversations(c.id, "", 1, 10).await.unwrap().len(), 1, "offset");
    assert_eq!(store.session_by_conversation(c.id, "c_sss").await.unwrap().map(|s| s.id), Some(silent.id));
    assert_eq!(store.session_by_conversation(c.id + 1, "c_sss").await.unwrap(), None);
    assert!(store.tasks_of_session(a.id).await.unwrap().is_empty());

    // Retention: sessions idle since before the cut go with their messages, newer ones stay.
    let idle = |before: i64, limit: u32| async move {
        let rows = store.sessions_idle(c.id, before, limit).await.unwrap();
        rows.into_iter().map(|s| s.conversation_id).collect::<Vec<_>>()
    };
    let erase = |conversation: &'static str| async move {
        let s = store.session_by_conversation(c.id, conversation).await.unwrap().unwrap();
        store.sessions_erase(&[s.id]).await.unwrap()
    };
    assert_eq!(idle(100, 10).await, ["c_sss"], "the silent one, started at 30");
    erase("c_sss").await;
    assert_eq!(store.session_by_conversation(c.id, "c_sss").await.unwrap(), None);
    assert_eq!(store.conversations(c.id, "", 0, 10).await.unwrap().len(), 2, "a spoke at 100 and 110, b at 200");
    assert_eq!(idle(120, 10).await, ["c_aaa"], "a: silent since 110");
    let deleted = erase("c_aaa").await;
    assert!(deleted.contains(&("messages", 2)) && deleted.contains(&("sessions", 1)), "{deleted:?}");
    assert_eq!(store.session_by_conversation(c.id, "c_aaa").await.unwrap(), None);
    assert!(store.messages_page(a.id, None, 10).await.unwrap().0.is_empty(), "its messages went too");
    assert!(store.session_by_conversation(c.id, "c_bbb").await.unwrap().is_some());
    store.session_create(c.id, "h-d", "c_ddd", 40).await.unwrap();
    assert_eq!(idle(1_000, 1).await, ["c_bbb"], "the limit holds, oldest first");
    assert_eq!(idle(1_000, 10).await, ["c_bbb", "c_ddd"]);
    assert!(store.sessions_erase(&[]).await.unwrap().iter().all(|(_, n)| *n == 0), "nothing to erase");
}

/// Access and erasure requests: sessions by email (trimmed, any case, per client or all) and
/// by public id across clients, a session's outbox, and an erasure that takes every visitor
/// table's rows of the erased sessions and nothing of the others.
async fn privacy_conformance(store: &dyn Store) {
    let shop = store.client_create("privacy-a", 1).await.unwrap();
    let other = store.client_create("privacy-b", 1).await.unwrap();
    let a1 = store.session_create(shop.id, "p-h1", "c_p1", 10).await.unwrap();
    let a2 = store.session_create(shop.id, "p-h2", "c_p2", 20).await.unwrap();
    let b1 = store.session_create(other.id, "p-h3", "c_p3", 30).await.unwrap();
    let keep = store.session_create(shop.id, "p-h4", "c_p4", 40).await.unwrap();
    store.session_identify(a1.id, Some("Dana"), Some(" Dana@Example.org ")).await.unwrap();
    store.session_identify(a2.id, None, Some("dana@example.org")).await.unwrap();
    store.session_identify(b1.id, None, Some("DANA@EXAMPLE.ORG")).await.unwrap();
    store.session_identify(keep.id, None, Some("dan@example.org")).await.unwrap();
    let ids = |rows: Vec<aia_chat::store::SessionRow>| rows.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(ids(store.sessions_by_email(None, "dana@example.org").await.unwrap()), [a1.id, a2.id, b1.id]);
    assert_eq!(ids(store.sessions_by_email(Some(shop.id), " DANA@example.org").await.unwrap()), [a1.id, a2.id]);
    assert!(store.sessions_by_email(None, "nobody@example.org").await.unwrap().is_empty());
    assert_eq!(store.session_by_public_id("c_p3").await.unwrap().map(|s| s.id), Some(b1.id), "any client");
    assert_eq!(store.session_by_public_id("c_none").await.unwrap(), None);

    for (i, s) in [a1.id, a2.id, keep.id].into_iter().enumerate() {
        store.message_insert(&visitor(s, &format!("p{i}"), "a private question")).await.unwrap();
        store.outbox_push(shop.id, s, "message", r#"{"text":"a private question"}"#, 50).await.unwrap();
        let link = OperatorLink {
            session_id: s,
            client_id: shop.id,
            source_id: format!("aia-p-{s}"),
            contact_id: Some(7),
            conversation_id: Some(100 + s),
            state: HandoffState::Human,
            handoffs: 1,
            updated_at: 50,
        };
        store.operator_link_save(&link).await.unwrap();
        let task = NewTaskRecord {
            client_id: shop.id,
            session_id: s,
            marker: format!("aia-task:p:{s}"),
            category: None,
            title: "Callback".into(),
            summary: "call me".into(),
            contact: Some("+49 171".into()),
            page: None,
            state: TaskState::Queued,
            now: 50,
        };
        store.task_insert(&task).await.unwrap();
    }
    let outbox = store.outbox_of_session(a1.id).await.unwrap();
    assert_eq!((outbox.len(), outbox[0].kind.as_str()), (1, "message"));
    let deleted = store.sessions_erase(&[a1.id, a2.id]).await.unwrap();
    let tables: Vec<&str> = aia_chat::store::privacy::visitor_tables().map(|(t, _)| t).collect();
    assert_eq!(deleted.iter().map(|(t, _)| *t).collect::<Vec<_>>(), tables, "every visitor table, in order");
    assert!(deleted.iter().all(|(_, n)| *n == 2), "two rows of each: {deleted:?}");
    for s in [a1.id, a2.id] {
        assert_eq!(store.session_by_id(s).await.unwrap(), None);
        assert!(store.messages_page(s, None, 10).await.unwrap().0.is_empty());
        assert!(store.outbox_of_session(s).await.unwrap().is_empty());
        assert!(store.tasks_of_session(s).await.unwrap().is_empty());
        assert_eq!(store.operator_link(s).await.unwrap(), None);
    }
    assert_eq!(store.messages_page(keep.id, None, 10).await.unwrap().0.len(), 1, "another visitor keeps theirs");
    assert_eq!(store.outbox_of_session(keep.id).await.unwrap().len(), 1);
    assert_eq!(store.tasks_of_session(keep.id).await.unwrap().len(), 1);
    assert!(store.operator_link(keep.id).await.unwrap().is_some());
    assert!(store.session_by_id(b1.id).await.unwrap().is_some(), "another client's visitor stays");
}

/// Admin accounts: unique names, grants, sessions that expire and end with a new password,
/// and a deleted client taking its grants with it.
async fn admin_conformance(store: &dyn Store, client: i64) {
    let before = store.admin_count().await.unwrap();
    let a = store.admin_create("ops", "$argon2id$x", AdminRole::Server, 5).await.unwrap();
    let b = store.admin_create("owner", "$argon2id$y", AdminRole::Client, 6).await.unwrap();
    assert!(matches!(store.admin_create("ops", "h", AdminRole::Client, 7).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.admin_count().await.unwrap(), before + 2);
    assert_eq!(store.admin_by_name("owner").await.unwrap(), Some(b.clone()));
    assert_eq!(store.admin_by_name("nobody").await.unwrap(), None);
    let other = store.client_create("admin-other", 1).await.unwrap();
    store.admin_grant(b.id, client, true).await.unwrap();
    store.admin_grant(b.id, client, true).await.unwrap();
    store.admin_grant(b.id, other.id, true).await.unwrap();
    assert_eq!(store.admin_grants(b.id).await.unwrap().len(), 2);
    store.admin_grant(b.id, client, false).await.unwrap();
    assert_eq!(store.admin_grants(b.id).await.unwrap(), ["admin-other"]);
    assert!(store.client_delete("admin-other").await.unwrap());
    assert!(!store.client_delete("admin-other").await.unwrap());
    assert!(store.admin_grants(b.id).await.unwrap().is_empty(), "the grant went with the client");

    store.admin_session_create("t1", a.id, "csrf1", 100, 200).await.unwrap();
    store.admin_session_create("t2", b.id, "csrf2", 100, 10_000).await.unwrap();
    let s = store.admin_session_get("t1", 150).await.unwrap().unwrap();
    assert_eq!((s.admin.username.as_str(), s.csrf.as_str(), s.expires_at), ("ops", "csrf1", 200));
    assert_eq!(store.admin_session_get("t1", 200).await.unwrap(), None, "expired");
    store.admin_set_password(b.id, "$argon2id$z").await.unwrap();
    assert_eq!(store.admin_session_get("t2", 150).await.unwrap(), None, "a new password signs out");
    assert_eq!(store.admin_by_name("owner").await.unwrap().unwrap().password_hash, "$argon2id$z");
    store.admin_session_create("t3", a.id, "csrf3", 300, 10_000).await.unwrap();
    store.admin_session_delete("t3").await.unwrap();
    assert_eq!(store.admin_session_get("t3", 301).await.unwrap(), None);
    assert!(store.admin_delete(b.id).await.unwrap());
    assert_eq!(store.admin_list().await.unwrap().iter().filter(|r| r.username == "owner").count(), 0);
}

/// Task records: one per marker, proposals, the due queue, attempts and outcomes, the cap.
async fn vector_conformance(store: &dyn Store, client: i64) {
    let (a, b) = ("local:m:1", "endpoint:http://x/v1#m");
    assert!(store.vectors_list(client, a).await.unwrap().is_empty());
    let rows: Vec<(String, Vec<u8>)> = (0..1500).map(|i| (format!("h{i}"), vec![i as u8, 1, 2, 3, 250])).collect();
    store.vectors_add(client, a, &rows).await.unwrap();
    store.vectors_add(client, b, &rows[..2]).await.unwrap();
    // A hash already stored keeps its first vector.
    store.vectors_add(client, a, &[("h0".into(), vec![9; 5])]).await.unwrap();
    let mut got = store.vectors_list(client, a).await.unwrap();
    got.sort();
    let mut want = rows.clone();
    want.sort();
    assert_eq!(got, want, "every vector, byte for byte, in its own space");
    assert_eq!(store.vectors_list(client, b).await.unwrap().len(), 2);
    let gone: Vec<String> = (0..1200).map(|i| format!("h{i}")).collect();
    store.vectors_remove(client, a, &gone).await.unwrap();
    assert_eq!(store.vectors_list(client, a).await.unwrap().len(), 300);
    assert_eq!(store.vectors_list(client, b).await.unwrap().len(), 2, "other spaces untouched");
}

async fn task_conformance(store: &dyn Store, client: i64, session: i64) {
    let new = |marker: &str, state: TaskState, now: i64| NewTaskRecord {
        client_id: client,
        session_id: session,
        marker: marker.into(),
        category: Some("Callback".into()),
        title: "Callback: call me".into(),
        summary: "Call me back".into(),
        contact: Some("+49 171 2345678".into()),
        page: None,
        state,
        now,
    };
    let proposed = store.task_insert(&new("aia-task:c:1", TaskState::Proposed, 1_000)).await.unwrap();
    assert_eq!(
        (proposed.state, proposed.attempts, proposed.title.as_str()),
        (TaskState::Proposed, 0, "Callback: call me")
    );
    assert!(matches!(
        store.task_insert(&new("aia-task:c:1", TaskState::Queued, 1_001)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.task_proposed(session).await.unwrap().map(|t| t.id), Some(proposed.id));
    assert!(store.tasks_due(5_000, 10).await.unwrap().is_empty(), "a proposal is not due");
    store.task_set_state(proposed.id, TaskState::Queued, 2_000).await.unwrap();
    assert_eq!(store.task_proposed(session).await.unwrap(), None);
    let due = store.tasks_due(2_000, 10).await.unwrap();
    assert_eq!(due.iter().map(|t| t.id).collect::<Vec<_>>(), [proposed.id]);
    store.task_attempt(proposed.id, 62_000).await.unwrap();
    assert!(store.tasks_due(3_000, 10).await.unwrap().is_empty(), "leased");
    store.task_retry(proposed.id, 4_000, "Trello is unavailable").await.unwrap();
    let again = &store.tasks_due(4_000, 10).await.unwrap()[0];
    assert_eq!((again.attempts, again.last_error.as_deref()), (1, Some("Trello is unavailable")));
    store.task_created(proposed.id, "card-1", "Ab12Cd34", "https://trello.com/c/Ab12Cd34", 5_000).await.unwrap();
    assert!(store.tasks_due(10_000, 10).await.unwrap().is_empty());
    let declined = store.task_insert(&new("aia-task:c:2", TaskState::Proposed, 6_000)).await.unwrap();
    store.task_set_state(declined.id, TaskState::Declined, 6_500).await.unwrap();
    let failed = store.task_insert(&new("aia-task:c:3", TaskState::Queued, 7_000)).await.unwrap();
    store.task_failed(failed.id, 8_000, "invalid token").await.unwrap();
    assert_eq!(store.tasks_since(session, 0).await.unwrap(), 2, "declined ones don't count");
    assert_eq!(store.tasks_since(session, 6_000).await.unwrap(), 1);
    let failures = store.tasks_failed(client).await.unwrap();
    assert_eq!((failures.len(), failures[0].last_error.as_deref()), (1, Some("invalid token")));
    assert!(store.tasks_failed(client + 1).await.unwrap().is_empty());
}

/// The operator's links, outbox and webhook deliveries.
async fn operator_conformance(store: &dyn Store, client: i64, s1: i64, s2: i64) {
    assert_eq!(store.operator_link(s1).await.unwrap(), None);
    let mut link = OperatorLink {
        session_id: s1,
        client_id: client,
        source_id: "aia-s-1".into(),
        contact_id: None,
        conversation_id: None,
        state: HandoffState::Waiting,
        handoffs: 1,
        updated_at: 10,
    };
    store.operator_link_save(&link).await.unwrap();
    assert_eq!(store.operator_link(s1).await.unwrap().as_ref(), Some(&link));
    assert!(store.operator_links_open(client).await.unwrap().is_empty(), "no conversation yet");
    (link.contact_id, link.conversation_id, link.state, link.updated_at) =
        (Some(1204), Some(311), HandoffState::Human, 11);
    store.operator_link_save(&link).await.unwrap();
    assert_eq!(store.operator_link(s1).await.unwrap().as_ref(), Some(&link), "saved again: updated");
    assert_eq!(store.operator_link_by_conversation(client, 311).await.unwrap().as_ref(), Some(&link));
    assert_eq!(store.operator_link_by_conversation(client, 312).await.unwrap(), None);
    assert_eq!(store.operator_link_by_conversation(client + 1, 311).await.unwrap(), None, "another client's");
    assert_eq!(store.operator_links_open(client).await.unwrap(), [link.clone()]);
    assert!(store.operator_links_open(client + 1).await.unwrap().is_empty(), "another client's");
    let back = OperatorLink { state: HandoffState::Bot, ..link.clone() };
    store.operator_link_save(&back).await.unwrap();
    assert!(store.operator_links_open(client).await.unwrap().is_empty(), "the bot has it again");
    store.operator_link_save(&link).await.unwrap();
    let clash = OperatorLink { session_id: s2, ..link.clone() };
    assert!(store.operator_link_save(&clash).await.is_err(), "source ids are unique");

    // An operator message: its author and attachments are kept; the same Chatwoot message
    // delivered twice is stored once.
    let reply = NewMessage {
        session_id: s1,
        role: Role::Operator,
        text: "Hi, Sam here.".into(),
        client_msg_id: Some("chatwoot#90230".into()),
        reply_to: None,
        source: None,
        entry_id: None,
        created_at: 20,
        usage: None,
        author: Some(Author { name: "Sam".into(), avatar_url: Some("https://chat.example/sam.png".into()) }),
        attachments: vec![Attachment { name: "invoice.pdf".into(), url: "https://chat.example/i.pdf".into() }],
        // Product cards are kept the same way (any message may carry them).
        products: vec![ProductCard {
            name: "Lumen Desk Lamp".into(),
            url: "https://shop.example/lumen-desk-lamp.html".into(),
            price: Some("49.90".into()),
            currency: Some("EUR".into()),
            image_url: None,
            in_stock: Some(true),
        }],
    };
    let Inserted::New(first) = store.message_insert(&reply).await.unwrap() else { panic!("a new message") };
    assert_eq!((first.author.clone(), first.attachments.clone()), (reply.author.clone(), reply.attachments.clone()));
    assert_eq!(first.products, reply.products);
    let Inserted::Duplicate(again) = store.message_insert(&reply).await.unwrap() else { panic!("a duplicate") };
    assert_eq!(again, first);

    // The outbox: first in, first out per session; a retried head blocks its session only.
    let a1 = store.outbox_push(client, s1, "handoff", "{}", 100).await.unwrap();
    let a2 = store.outbox_push(client, s1, "message", r#"{"text":"2"}"#, 101).await.unwrap();
    let b1 = store.outbox_push(client, s2, "message", r#"{"text":"b"}"#, 102).await.unwrap();
    let ids = |items: Vec<OutboxItem>| items.into_iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(ids(store.outbox_due(99, 10).await.unwrap()), Vec::<i64>::new(), "nothing due before its time");
    assert_eq!(ids(store.outbox_due(200, 10).await.unwrap()), [a1, b1], "the head of each session");
    assert_eq!(ids(store.outbox_due(200, 1).await.unwrap()), [a1], "limited");
    store.outbox_retry(a1, 500, "HTTP 503").await.unwrap();
    assert_eq!(ids(store.outbox_due(200, 10).await.unwrap()), [b1], "a2 waits for a1");
    let head = store.outbox_due(500, 10).await.unwrap().into_iter().find(|i| i.id == a1).expect("a1 due again");
    assert_eq!((head.id, head.attempts, head.last_error.as_deref()), (a1, 1, Some("HTTP 503")));
    store.outbox_done(a1).await.unwrap();
    let next = store.outbox_due(500, 10).await.unwrap();
    assert_eq!(ids(next.clone()), [a2, b1], "by due time");
    assert_eq!((next[0].kind.as_str(), next[0].payload.as_str()), ("message", r#"{"text":"2"}"#));
    store.outbox_dead(b1, 600, "too old").await.unwrap();
    assert_eq!(ids(store.outbox_due(700, 10).await.unwrap()), [a2]);
    let dead = store.outbox_dead_letters(client).await.unwrap();
    assert_eq!(
        (dead.len(), dead[0].id, dead[0].dead_at, dead[0].last_error.as_deref()),
        (1, b1, Some(600), Some("too old"))
    );
    assert!(!store.outbox_revive(client + 1, b1, 650).await.unwrap(), "another client's item");
    assert!(!store.outbox_revive(client, a2, 650).await.unwrap(), "only dead items");
    assert!(store.outbox_revive(client, b1, 650).await.unwrap());
    assert!(store.outbox_dead_letters(client).await.unwrap().is_empty());
    let revived = store.outbox_due(700, 10).await.unwrap().into_iter().find(|i| i.id == b1).expect("b1 due again");
    assert_eq!(revived.attempts, 0);
    store.outbox_dead(b1, 600, "too old").await.unwrap();
    let b2 = store.outbox_push(client, s2, "message", "{}", 650).await.unwrap();
    assert_eq!(ids(store.outbox_due(700, 10).await.unwrap()), [a2, b2], "a dead item no longer blocks its session");

    // Webhook deliveries: a repeat within a day is recognised, an old id is forgotten.
    let day = 24 * 3600 * 1000;
    assert!(store.webhook_delivery_first("d-1", 1_000).await.unwrap());
    assert!(!store.webhook_delivery_first("d-1", 2_000).await.unwrap(), "a repeat");
    assert!(store.webhook_delivery_first("d-2", 2_000).await.unwrap());
    assert!(!store.webhook_delivery_first("d-1", day).await.unwrap(), "still a repeat within the day");
    assert!(store.webhook_delivery_first("d-1", 1_000 + day + 1).await.unwrap(), "forgotten after a day");
    assert_eq!(store.webhook_deliveries_forget(2_001 + day).await.unwrap(), 1, "d-2 is swept");
    assert!(!store.webhook_delivery_first("d-1", 2_002 + day).await.unwrap(), "d-1 is remembered anew");
}

// Two worker threads, so the writers of the "many writers at once" step really overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    conformance(aia_chat::store::open(None, dir.path()).await.unwrap()).await;
    // Reopening migrates nothing twice and keeps the data.
    let store = aia_chat::store::open(None, dir.path()).await.unwrap();
    assert_eq!(store.client_list().await.unwrap().len(), 5);
}

/// Creates a fresh database on the server of `TEST_DATABASE_URL` and returns its URL.
pub async fn fresh_postgres() -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())?;
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("TEST_DATABASE_URL reachable");
    let name = format!("aia_test_{:x}", rand::random::<u64>());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    let mut parsed = url::Url::parse(&url).unwrap();
    parsed.set_path(&name);
    Some(parsed.to_string())
}

#[tokio::test]
async fn conformance_postgres() {
    let Some(url) = fresh_postgres().await else {
        loud_skip("postgres", "TEST_DATABASE_URL is not set");
        count_run("PG_TESTS_RUN", 0);
        return;
    };
    conformance(aia_chat::store::open(Some(&url), std::path::Path::new("/nonexistent")).await.unwrap()).await;
    count_run("PG_TESTS_RUN", 1);
}

#[tokio::test]
async fn the_server_runs_on_postgres() {
    let Some(url) = fresh_postgres().await else {
        loud_skip("postgres", "TEST_DATABASE_URL is not set");
        return;
    };
    let app = crate::support::TestApp::spawn_with(|s| {
        s.store.database_url = Some(url.clone());
        s.store.secret_key = Some("ab".repeat(32));
    })
    .await;
    let (mut ws, welcome) = app.visitor(None).await;
    let (_, answer) = ws.ask("pg-1", "Which payment methods do you accept?").await;
    assert_eq!(answer["entryId"], "payment-methods");
    drop(ws);
    let (_, again) = app.visitor(Some(welcome["session"].as_str().unwrap())).await;
    assert_eq!(again["history"].as_array().unwrap().len(), 2);

    // PostgreSQL without AIA_SECRET_KEY is refused: every node must share one key.
    let mut settings = crate::support::test_settings(app.dir.path());
    settings.store.database_url = Some(url);
    settings.store.secret_key = None;
    let err = aia_chat::App::build(settings).await.err().expect("refused");
    assert!(format!("{err:#}").contains("AIA_SECRET_KEY is required"));
}

/// During a rolling upgrade an older node opens a database a newer version has migrated: it
/// must start (the newer migrations keep it working), on SQLite and PostgreSQL.
#[tokio::test]
async fn a_database_migrated_by_a_newer_version_still_opens() {
    const NEWER: &str = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                         VALUES (9999, 'from a newer version', TRUE, X'00', 0)";
    const NEWER_PG: &str = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                            VALUES (9999, 'from a newer version', TRUE, '\\x00'::bytea, 0)";
    let dir = tempfile::tempdir().unwrap();
    drop(aia_chat::store::open(None, dir.path()).await.unwrap());
    {
        use sqlx::Connection;
        let path = dir.path().join("aia-chat.db");
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display())).await.unwrap();
        sqlx::query(NEWER).execute(&mut conn).await.unwrap();
    }
    let store = aia_chat::store::open(None, dir.path()).await.expect("an older version opens the newer database");
    assert!(store.client_list().await.is_ok());

    let Some(url) = fresh_postgres().await else {
        loud_skip("postgres", "TEST_DATABASE_URL is not set");
        return;
    };
    drop(aia_chat::store::open(Some(&url), dir.path()).await.unwrap());
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(NEWER_PG).execute(&mut conn).await.unwrap();
    }
    let store = aia_chat::store::open(Some(&url), dir.path()).await.expect("the same on PostgreSQL");
    assert!(store.client_list().await.is_ok());
}
