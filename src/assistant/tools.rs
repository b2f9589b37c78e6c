//! The tools the model may call: search the shop's products, hand the conversation to a
//! person, create a follow-up task. Each call gets an answer the model can act on; a
//! capability this shop has not set up is said to be unavailable, so the model tells the
//! visitor what it really can do instead of pretending.

use serde_json::json;

use crate::model::chat::{ToolCall, ToolSpec};

/// The tools every model is offered (built once: they are sent with every answer).
pub fn declarations() -> &'static [ToolSpec] {
    static TOOLS: std::sync::LazyLock<Vec<ToolSpec>> = std::sync::LazyLock::new(build);
    &TOOLS
}

fn build() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "search_products",
            description: "Search the shop's product catalog. Use it when the visitor looks for a product, asks \
                          whether something is sold, or asks for a price or availability.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to search for, in the visitor's words."},
                    "max_price": {"type": "number", "description": "Upper price limit, if the visitor gave one."}
                },
                "required": ["query"]
            }),
        },
        ToolSpec {
            name: "handoff_to_human",
            description: "Hand the conversation to a human operator. Use it when the visitor asks for a person, \
                          or when you cannot help and a person could.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "reason": {"type": "string", "description": "Why a person should take over, in one sentence."}
                },
                "required": ["reason"]
            }),
        },
        ToolSpec {
            name: "create_task",
            description: "Create a follow-up task for the shop's team: a call-back, a complaint, a quote or \
                          return request, a bug report. Only when the visitor wants the shop to act later.",
            parameters: json!({
                "type": "object",
                "properties": {
                    "title": {"type": "string"},
                    "description": {"type": "string"},
                    "contact": {"type": "string", "description": "How to reach the visitor, if they gave it."},
                    "category": {"type": "string"}
                },
                "required": ["title", "description"]
            }),
        },
    ]
}

/// The tool message content answering `call`, and whether it hands the conversation to a
/// person (`handoff`: this shop has one; the caller starts the hand-off once the answer is
/// stored). Product search and tasks are not wired yet and say so.
pub fn run(call: &ToolCall, handoff: bool) -> (String, bool) {
    let unavailable = |what: &str| {
        json!({
            "ok": false,
            "error": "not_configured",
            "message": format!("{what} is not set up for this shop. Tell the visitor what you can do instead, without promising it."),
        })
    };
    let result = match (call.name.as_str(), &call.arguments) {
        (_, Err(why)) => json!({"ok": false, "error": "invalid_arguments", "message": why}),
        ("search_products", Ok(_)) => unavailable("Product search"),
        ("handoff_to_human", Ok(_)) if handoff => {
            let message = "A person from the shop's team has been asked to join this chat. Tell the visitor, in one \
                           short sentence, that they will reply right here.";
            return (json!({"ok": true, "message": message}).to_string(), true);
        }
        ("handoff_to_human", Ok(_)) => unavailable("Handing the conversation to a person"),
        ("create_task", Ok(_)) => unavailable("Creating a follow-up task"),
        (other, Ok(_)) => {
            json!({"ok": false, "error": "unknown_tool", "message": format!("There is no tool named {other}.")})
        }
    };
    (result.to_string(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn call(name: &str, arguments: Result<Value, String>) -> ToolCall {
        ToolCall { id: "call_1".into(), name: name.into(), raw_arguments: "{}".into(), arguments }
    }

    #[test]
    fn every_call_gets_an_answer_the_model_can_use() {
        let names: Vec<&str> = declarations().iter().map(|t| t.name).collect();
        assert_eq!(names, ["search_products", "handoff_to_human", "create_task"]);
        let answer = |name: &str, args: Result<Value, String>, handoff: bool| {
            let (text, hands_off) = run(&call(name, args), handoff);
            (serde_json::from_str::<Value>(&text).unwrap(), hands_off)
        };
        let (r, h) = answer("search_products", Ok(json!({"query": "kettle"})), true);
        assert_eq!((r["ok"].as_bool(), r["error"].as_str(), h), (Some(false), Some("not_configured"), false));
        let (r, _) = answer("create_task", Err("arguments were not valid JSON".into()), true);
        assert_eq!(r["error"], "invalid_arguments");
        let (r, _) = answer("delete_shop", Ok(json!({})), true);
        assert_eq!(r["error"], "unknown_tool");
        // A hand-off happens only where a person can take over.
        let (r, h) = answer("handoff_to_human", Ok(json!({"reason": "wants a refund"})), false);
        assert_eq!((r["error"].as_str(), h), (Some("not_configured"), false));
        let (r, h) = answer("handoff_to_human", Ok(json!({"reason": "wants a refund"})), true);
        assert_eq!((r["ok"].as_bool(), h), (Some(true), true));
    }
}
