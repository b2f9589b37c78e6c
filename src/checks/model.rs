//! The model check: one short round trip to the client's language model, streamed exactly as
//! an answer is, asking for a single word.

use serde_json::json;

use super::{Outcome, Subject, Toolkit, failed, passed};
use crate::tasks::detect::excerpt;

pub(super) async fn check(kit: &Toolkit<'_>, client: Subject<'_>) -> Outcome {
    use crate::model::chat::{Chat, ChatRequest, Turn};
    let place = || {
        let url = client.settings.get("model_url");
        format!("model API ({})", if url.is_empty() { "the provider's default URL" } else { url })
    };
    let config = match crate::assistant::model_config(client.settings, kit.keys, client.uid) {
        None => {
            return failed(
                "No model is configured: the assistant answers from the knowledge base on its own.",
                "AI model settings",
                "model_url and model_token are empty",
                "Set model_token (and model_url for a server other than OpenAI's), then save and test again.",
            )
            .unconfigured();
        }
        Some(Err(why)) => {
            return failed(
                "The model settings cannot be used.",
                "AI model settings",
                why,
                "Correct the AI model settings.",
            );
        }
        Some(Ok(config)) => config,
    };
    let chat = Chat {
        system: "You check a connection. Reply with the single word OK.".into(),
        turns: vec![Turn::User("Ping".into())],
    };
    let request = ChatRequest { model: &config.model, chat: &chat, tools: &[], max_tokens: config.max_tokens };
    let body = config.endpoint.provider.protocol().body(&request);
    let mut reply = String::new();
    let result =
        crate::model::client::stream_chat(kit.model_http, &config.endpoint, &body, &config.timeouts, |piece| {
            if reply.len() < 400 {
                reply.push_str(piece)
            }
        })
        .await;
    match result {
        Ok(_) => {
            let reply = excerpt(reply.trim(), 120);
            let mut o =
                passed(format!("The model {} answered.", config.model), json!({"model": config.model, "reply": reply}));
            o.notes.push(format!("reply: {reply}"));
            o
        }
        Err(e) => failed(
            "The model did not answer.",
            place(),
            e.to_string(),
            "Check model_url, model_token and model_type (the model id the provider expects).",
        ),
    }
}
