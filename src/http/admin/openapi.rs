//! The admin API's OpenAPI 3.1 document, served at `/api/admin/openapi.json`. The settings'
//! schema is generated from the settings table, so the document cannot drift from the code
//! that validates a change; a test checks every documented route answers as documented.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::clients::settings::{Group, Kind, SETTINGS};

/// A client uid (`clients::valid_uid`).
const UID_PATTERN: &str = "^[A-Za-z0-9._-]{1,64}$";

/// `GET /api/admin/openapi.json`.
pub async fn document() -> Response {
    Json(spec()).into_response()
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
}

/// An access or erasure request's operation: the visitor in the body (never in the URL, so
/// no address reaches access logs).
fn visitor_operation(id: &str, summary: &str, ok: Value) -> Value {
    json!({
        "operationId": id, "summary": summary, "security": [{"session": [], "csrf": []}],
        "description": "visitor is a conversation id (c_…) or an email given through identify (compared trimmed and \
            case-insensitively; every conversation with it). With client, that client's conversations only (an account \
            may name the clients it manages); without, every client's (server admins only).",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VisitorRequest"}}}},
        "responses": {
            "200": ok,
            "400": error_response("The body is not JSON."),
            "401": error_response("Not signed in."),
            "403": error_response("No client named by a client admin, no or a wrong CSRF token, or a cross-site request."),
            "404": error_response("No such client (or not one this account manages), or no conversation has this id or was identified with this email."),
            "415": error_response("The body is not JSON."),
            "422": error_response("The body misses visitor, or it is empty or longer than 320 characters.")
        }
    })
}

/// The document.
pub fn spec() -> Value {
    let uid_param = json!({
        "name": "uid", "in": "path", "required": true,
        "schema": {"type": "string", "pattern": UID_PATTERN},
        "description": "The client's public clientUid."
    });
    let session = json!([{"session": [], "csrf": []}]);
    let reads = json!([{"session": []}]);
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "aia-chat admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Manage clients (websites) and their settings. Sign in with POST /api/admin/login; \
                the session is an HttpOnly cookie, and every request that changes state repeats the session's \
                CSRF token (from the login answer or GET /api/admin/session) in the X-CSRF-Token header. \
                Secrets are write-only: answers say only whether one is set."
        },
        "paths": {
            "/api/admin/login": {"post": {
                "operationId": "login", "summary": "Sign in", "security": [],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Login"}}}},
                "responses": {
                    "200": json_response("Signed in; the session cookie is set.", "Session"),
                    "400": error_response("The body is not JSON."),
                    "401": error_response("Wrong username or password."),
                    "403": error_response("A cross-site request."),
                    "415": error_response("The body is not JSON."),
                    "422": error_response("The body misses a field."),
                    "429": error_response("Too many wrong passwords for this account from this address: wait Retry-After seconds.")
                }
            }},
            "/api/admin/logout": {"post": {
                "operationId": "logout", "summary": "Sign out", "security": session,
                "responses": {
                    "204": {"description": "Signed out; the cookie is cleared."},
                    "401": error_response("Not signed in."),
                    "403": error_response("No or a wrong CSRF token, or a cross-site request.")
                }
            }},
            "/api/admin/session": {"get": {
                "operationId": "session", "summary": "Who is signed in", "security": reads,
                "responses": {
                    "200": json_response("The signed-in account and its CSRF token.", "Session"),
                    "401": error_response("Not signed in.")
                }
            }},
            "/api/admin/clients": {
                "get": {
                    "operationId": "listClients", "summary": "The clients this account manages", "security": reads,
                    "responses": {
                        "200": json_response("The clients.", "ClientList"),
                        "401": error_response("Not signed in.")
                    }
                },
                "post": {
                    "operationId": "createClient", "summary": "Add a client (server admins)", "security": session,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewClient"}}}},
                    "responses": {
                        "201": json_response("The new client.", "Client"),
                        "400": error_response("The body is not JSON."),
                        "401": error_response("Not signed in."),
                        "403": error_response("Not a server admin, no or a wrong CSRF token, or a cross-site request."),
                        "409": error_response("The uid is taken."),
                        "415": error_response("The body is not JSON."),
                        "422": error_response("An invalid uid.")
                    }
                }
            },
            "/api/admin/clients/{uid}": {
                "parameters": [uid_param],
                "get": {
                    "operationId": "getClient", "summary": "A client's settings by group", "security": reads,
                    "responses": {
                        "200": json_response("The client.", "Client"),
                        "401": error_response("Not signed in."),
                        "404": error_response("No such client, or not one this account manages.")
                    }
                },
                "patch": {
                    "operationId": "updateClient", "summary": "Change settings", "security": session,
                    "description": "The change is validated as a whole before anything is written; an error names the field.",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ClientChange"}}}},
                    "responses": {
                        "200": json_response("The client after the change, with what changed.", "Client"),
                        "400": error_response("The body is not JSON."),
                        "401": error_response("Not signed in."),
                        "403": error_response("No or a wrong CSRF token, or a cross-site request."),
                        "404": error_response("No such client, or not one this account manages."),
                        "415": error_response("The body is not JSON."),
                        "422": error_response("An unknown setting or an invalid value (the message names it).")
                    }
                },
                "delete": {
                    "operationId": "deleteClient", "summary": "Delete a client and all it owns (server admins)", "security": session,
                    "responses": {
                        "204": {"description": "Deleted."},
                        "401": error_response("Not signed in."),
                        "403": error_response("Not a server admin, no or a wrong CSRF token, or a cross-site request."),
                        "404": error_response("No such client.")
                    }
                }
            },
            "/api/admin/clients/{uid}/checks/{integration}": {
                "parameters": [uid_param, {
                    "name": "integration", "in": "path", "required": true,
                    "schema": {"type": "string", "enum": super::checks::INTEGRATIONS},
                    "description": "What to test with the client's saved settings."
                }],
                "post": {
                    "operationId": "checkIntegration", "summary": "Test an integration (the editor's test buttons)", "security": session,
                    "description": "Runs one short request against the integration and diagnoses the result: 200 whether the \
                        integration works (ok: true) or not (ok: false, with where, what and what to change).",
                    "requestBody": {"required": false, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckInput"}}}},
                    "responses": {
                        "200": json_response("What the test found.", "CheckReport"),
                        "400": error_response("The body is not a JSON object."),
                        "401": error_response("Not signed in."),
                        "403": error_response("No or a wrong CSRF token, or a cross-site request."),
                        "404": error_response("No such client (or not one this account manages), or no such integration.")
                    }
                }
            },
            "/api/admin/clients/{uid}/conversations": {
                "parameters": [uid_param],
                "get": {
                    "operationId": "listConversations", "summary": "Conversations, newest activity first", "security": reads,
                    "parameters": [
                        {"name": "q", "in": "query", "required": false, "schema": {"type": "string"},
                         "description": "Keeps conversations with a message containing it (case-insensitive), or with this conversation id."},
                        {"name": "page", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}
                    ],
                    "responses": {
                        "200": json_response("One page (25) of conversations.", "Conversations"),
                        "400": error_response("A malformed query."),
                        "401": error_response("Not signed in."),
                        "404": error_response("No such client, or not one this account manages.")
                    }
                }
            },
            "/api/admin/clients/{uid}/conversations/{conversation}": {
                "parameters": [uid_param, {"name": "conversation", "in": "path", "required": true, "schema": {"type": "string"},
                    "description": "The conversation id (c_…), never the visitor's session token."}],
                "get": {
                    "operationId": "getConversation", "summary": "A transcript with its hand-off state and tasks", "security": reads,
                    "responses": {
                        "200": json_response("The newest 500 messages, oldest first.", "Transcript"),
                        "401": error_response("Not signed in."),
                        "404": error_response("No such client or conversation, or not one this account manages.")
                    }
                }
            },
            "/api/admin/visitors/export": {
                "post": visitor_operation("exportVisitor", "A visitor's conversations, as JSON (an access request)",
                    json_response("Everything kept about the visitor's conversations, grouped by client, and what exists at Chatwoot and Trello.", "VisitorExport"))
            },
            "/api/admin/visitors/delete": {
                "post": visitor_operation("deleteVisitor", "Delete a visitor's conversations (an erasure request)",
                    json_response("Deleted from every table; live sockets end. The Chatwoot conversations and Trello cards listed are not deleted there.", "VisitorErasure"))
            },
            "/api/admin/clients/{uid}/training": {
                "parameters": [uid_param],
                "get": {
                    "operationId": "getTraining", "summary": "Training status and history", "security": reads,
                    "responses": {
                        "200": json_response("The running run's progress, the last result and the newest runs.", "Training"),
                        "401": error_response("Not signed in."),
                        "404": error_response("No such client, or not one this account manages.")
                    }
                },
                "post": {
                    "operationId": "startTraining", "summary": "Start a training run in the background", "security": session,
                    "responses": {
                        "202": {"description": "Started; follow it with GET.", "content": {"application/json": {"schema": {
                            "type": "object", "required": ["started"], "properties": {"started": {"type": "boolean"}}
                        }}}},
                        "401": error_response("Not signed in."),
                        "403": error_response("No or a wrong CSRF token, or a cross-site request."),
                        "404": error_response("No such client, or not one this account manages."),
                        "409": error_response("No training source is configured, or a run is in progress.")
                    }
                }
            },
            "/api/admin/clients/{uid}/usage": {
                "parameters": [uid_param],
                "get": {
                    "operationId": "getUsage", "summary": "Model tokens per UTC day, the last 14 days", "security": reads,
                    "responses": {
                        "200": json_response("Newest day first.", "Usage"),
                        "401": error_response("Not signed in."),
                        "404": error_response("No such client, or not one this account manages.")
                    }
                }
            },
            "/api/admin/clients/{uid}/outbox": {
                "parameters": [uid_param],
                "get": {
                    "operationId": "getDeadLetters", "summary": "Operator deliveries that were given up", "security": reads,
                    "responses": {
                        "200": json_response("Newest first.", "DeadLetters"),
                        "401": error_response("Not signed in."),
                        "404": error_response("No such client, or not one this account manages.")
                    }
                }
            },
            "/api/admin/clients/{uid}/outbox/{id}/retry": {
                "parameters": [uid_param, {"name": "id", "in": "path", "required": true, "schema": {"type": "integer", "format": "int64"}}],
                "post": {
                    "operationId": "retryDeadLetter", "summary": "Try a given-up delivery again", "security": session,
                    "responses": {
                        "204": {"description": "Queued again."},
                        "400": error_response("The id is not a number."),
                        "401": error_response("Not signed in."),
                        "403": error_response("No or a wrong CSRF token, or a cross-site request."),
                        "404": error_response("No such client, or no given-up item with this id.")
                    }
                }
            },
            "/api/admin/accounts": {
                "get": {
                    "operationId": "listAccounts", "summary": "Admin accounts (server admins)", "security": reads,
                    "responses": {
                        "200": json_response("Every account with its role and clients; never a password hash.", "Accounts"),
                        "401": error_response("Not signed in."),
                        "403": error_response("Not a server admin.")
                    }
                },
                "post": {
                    "operationId": "createAccount", "summary": "Add an account (server admins)", "security": session,
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewAccount"}}}},
                    "responses": {
                        "201": json_response("The account.", "Account"),
                        "400": error_response("The body is not JSON."),
                        "401": error_response("Not signed in."),
                        "403": error_response("Not a server admin, no or a wrong CSRF token, or a cross-site request."),
                        "409": error_response("The username is taken."),
                        "415": error_response("The body is not JSON."),
                        "422": error_response("An invalid username or password, or an unknown client.")
                    }
                }
            },
            "/api/admin/accounts/{username}": {
                "parameters": [{"name": "username", "in": "path", "required": true, "schema": {"type": "string"}}],
                "patch": {
                    "operationId": "updateAccount", "summary": "Set a password or the granted clients (server admins)", "security": session,
                    "description": "A new password signs the account out everywhere.",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AccountChange"}}}},
                    "responses": {
                        "200": json_response("The account after the change.", "Account"),
                        "400": error_response("The body is not JSON."),
                        "401": error_response("Not signed in."),
                        "403": error_response("Not a server admin, no or a wrong CSRF token, or a cross-site request."),
                        "404": error_response("No such account."),
                        "415": error_response("The body is not JSON."),
                        "422": error_response("An invalid password, an unknown client, or grants for a server admin.")
                    }
                },
                "delete": {
                    "operationId": "deleteAccount", "summary": "Delete an account (server admins)", "security": session,
                    "responses": {
                        "204": {"description": "Deleted; its sessions end."},
                        "401": error_response("Not signed in."),
                        "403": error_response("Not a server admin, no or a wrong CSRF token, or a cross-site request."),
                        "404": error_response("No such account."),
                        "409": error_response("The last server admin stays.")
                    }
                }
            },
            "/api/admin/session/password": {"post": {
                "operationId": "changeOwnPassword", "summary": "Change your own password", "security": session,
                "description": "Checks the current password; then every session of the account ends.",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OwnPassword"}}}},
                "responses": {
                    "204": {"description": "Changed; sign in again."},
                    "400": error_response("The body is not JSON."),
                    "401": error_response("Not signed in."),
                    "403": error_response("The current password is wrong, no or a wrong CSRF token, or a cross-site request."),
                    "415": error_response("The body is not JSON."),
                    "422": error_response("The new password is too short or too long.")
                }
            }},
            "/api/admin/openapi.json": {"get": {
                "operationId": "openapi", "summary": "This document", "security": [],
                "responses": {"200": {"description": "The OpenAPI document.", "content": {"application/json": {"schema": {"type": "object"}}}}}
            }}
        },
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": super::COOKIE},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"}
            },
            "schemas": schemas()
        }
    })
}

fn schemas() -> Value {
    let error = json!({
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "description": "Stable, machine-readable."},
            "message": {"type": "string", "description": "What happened and what to change."}
        }}}
    });
    let group_ids: Vec<&str> = Group::ALL.iter().map(|g| g.id()).collect();
    let setting = json!({
        "type": "object", "required": ["key", "type", "help"],
        "properties": {
            "key": {"type": "string"},
            "type": {"type": "string", "enum": ["color", "select", "suggested", "url", "list", "text", "textarea", "number", "password", "secret-headers"]},
            "help": {"type": "string"},
            "value": {"type": "string", "description": "The effective value (plain settings only)."},
            "default": {"type": "string"},
            "isDefault": {"type": "boolean"},
            "set": {"type": "boolean", "description": "Secrets only: whether one is stored. The value is never sent."},
            "follows": {"type": "string", "description": "Secrets only: the URL setting whose host the secret is bound to."},
            "options": {"type": "array", "items": {"type": "object", "required": ["value", "label"], "properties": {"value": {"type": "string"}, "label": {"type": "string"}}}},
            "maxLength": {"type": "integer"}, "min": {"type": "integer"}, "max": {"type": "integer"}
        }
    });
    let client = json!({
        "type": "object",
        "required": ["uid", "createdAt", "settingsVersion", "knowledgeEntries", "groups", "connectCode", "webhookUrl", "listsUrl"],
        "properties": {
            "uid": {"type": "string"},
            "createdAt": {"type": "string", "format": "date-time"},
            "settingsVersion": {"type": "integer"},
            "knowledgeEntries": {"type": "integer", "minimum": 0},
            "groups": {"type": "array", "items": {"type": "object", "required": ["id", "label", "settings"], "properties": {
                "id": {"type": "string", "enum": group_ids}, "label": {"type": "string"},
                "settings": {"type": "array", "items": {"$ref": "#/components/schemas/Setting"}}
            }}},
            "connectCode": {"type": "string", "description": "The JavaScript Connect Code to paste into the website."},
            "webhookUrl": {"type": "string", "description": "The URL to paste into Chatwoot's webhook settings."},
            "listsUrl": {"type": "string", "description": "The in-app lists test endpoint of the task board."},
            "changes": {"type": "array", "items": {"type": "object", "required": ["key", "change"], "properties": {
                "key": {"type": "string"},
                "change": {"type": "string", "enum": ["set", "reset", "cleared_host_changed"]}
            }}}
        }
    });
    let mut change_props = Map::new();
    for d in SETTINGS {
        let mut schema = match d.kind {
            Kind::Select(options) => {
                let mut values: Vec<Value> = options.iter().map(|o| json!(o)).collect();
                values.push(json!(""));
                json!({"enum": values})
            }
            // The length is checked as here (in characters); other rules (a single line, a
            // URL the upstream policy allows…) are the server's and answer 422.
            Kind::Text { max } | Kind::Multiline { max } | Kind::Suggested { max, .. } => {
                json!({"type": "string", "maxLength": max})
            }
            _ => json!({"type": "string"}),
        };
        schema["description"] = json!(format!(
            "{}{}",
            d.help,
            if d.secret() {
                " Write-only: \"\" keeps the stored value, null clears it."
            } else {
                " \"\" or null resets to the default."
            }
        ));
        change_props.insert(d.key.to_string(), json!({"anyOf": [schema, {"type": "null"}]}));
    }
    let mut all = json!({
        "Error": error,
        "Login": {"type": "object", "required": ["username", "password"], "properties": {
            "username": {"type": "string"}, "password": {"type": "string"}
        }},
        "Session": {"type": "object", "required": ["username", "role", "clients", "csrfToken"], "properties": {
            "username": {"type": "string"},
            "role": {"type": "string", "enum": ["server", "client"]},
            "clients": {"type": "array", "items": {"type": "string"}, "description": "A client admin's clients (empty for server admins, who manage all)."},
            "csrfToken": {"type": "string"}
        }},
        "ClientList": {"type": "object", "required": ["clients"], "properties": {"clients": {"type": "array", "items": {
            "type": "object", "required": ["uid", "createdAt", "botName", "allowedDomains", "knowledgeEntries"],
            "properties": {
                "uid": {"type": "string"}, "createdAt": {"type": "string", "format": "date-time"},
                "botName": {"type": "string"}, "allowedDomains": {"type": "string"},
                "knowledgeEntries": {"type": "integer", "minimum": 0}
            }
        }}}},
        "NewClient": {"type": "object", "required": ["uid"], "properties": {"uid": {
            "type": "string", "pattern": UID_PATTERN,
            "description": "1-64 characters of A-Z, a-z, 0-9, '-', '_', '.'."
        }}},
        "ClientChange": {"type": "object", "required": ["settings"], "properties": {
            "settings": {
                "type": "object", "properties": Value::Object(change_props), "additionalProperties": false,
                "description": "Setting key → new value. An unknown key is refused (422, unknown_setting)."
            }
        }},
        "Setting": setting,
        "Client": client,
        "Conversations": {"type": "object", "required": ["conversations", "page", "more"], "properties": {
            "page": {"type": "integer"}, "more": {"type": "boolean"},
            "conversations": {"type": "array", "items": {"type": "object",
                "required": ["conversationId", "startedAt", "lastAt", "messages", "tasks", "feedback"], "properties": {
                "conversationId": {"type": "string"}, "startedAt": {"type": "string"}, "lastAt": {"type": "string"},
                "messages": {"type": "integer"}, "firstQuestion": {"type": ["string", "null"]},
                "handoff": {"type": ["string", "null"], "enum": ["bot", "waiting", "human", null]},
                "tasks": {"type": "integer"},
                "feedback": {"type": "object", "required": ["up", "down"], "properties": {"up": {"type": "integer"}, "down": {"type": "integer"}}},
                "visitorName": {"type": ["string", "null"], "description": "What the host page said (unverified)."}
            }}}
        }},
        "Transcript": {"type": "object", "required": ["conversationId", "startedAt", "visitor", "messages", "tasks", "earlierMessages"], "properties": {
            "conversationId": {"type": "string"}, "startedAt": {"type": "string"},
            "visitor": {"type": "object", "properties": {"name": {"type": ["string", "null"]}, "email": {"type": ["string", "null"]}, "verified": {"type": "boolean"}}},
            "handoff": {"type": ["string", "null"]},
            "earlierMessages": {"type": "boolean"},
            "messages": {"type": "array", "items": {"type": "object", "required": ["seq", "role", "text", "at"], "properties": {
                "seq": {"type": "integer"}, "role": {"type": "string", "enum": ["visitor", "assistant", "operator", "system"]},
                "text": {"type": "string"}, "at": {"type": "string"}, "source": {"type": ["string", "null"]},
                "entryId": {"type": ["string", "null"]}, "feedback": {"type": ["string", "null"]}, "author": {"type": ["string", "null"]}
            }}},
            "tasks": {"type": "array", "items": {"type": "object", "required": ["title", "state", "createdAt"], "properties": {
                "title": {"type": "string"}, "state": {"type": "string"}, "reference": {"type": ["string", "null"]},
                "url": {"type": ["string", "null"]}, "createdAt": {"type": "string"}, "lastError": {"type": ["string", "null"]}
            }}}
        }},
        "Account": {"type": "object", "required": ["username", "role", "clients"], "properties": {
            "username": {"type": "string"}, "role": {"type": "string", "enum": ["server", "client"]},
            "clients": {"type": "array", "items": {"type": "string"}}, "createdAt": {"type": "string"}
        }},
        "Accounts": {"type": "object", "required": ["accounts"], "properties": {"accounts": {"type": "array", "items": {"$ref": "#/components/schemas/Account"}}}},
        "NewAccount": {"type": "object", "required": ["username", "password", "role"], "properties": {
            "username": {"type": "string", "pattern": "^[A-Za-z0-9._@-]{1,64}$"},
            "password": {"type": "string", "minLength": 10, "maxLength": 256},
            "role": {"type": "string", "enum": ["server", "client"]},
            "clients": {"type": "array", "items": {"type": "string"}, "description": "A client admin's clients (ignored for server admins)."}
        }},
        "AccountChange": {"type": "object", "properties": {
            "password": {"type": ["string", "null"], "minLength": 10, "maxLength": 256},
            "clients": {"type": ["array", "null"], "items": {"type": "string"}}
        }},
        "OwnPassword": {"type": "object", "required": ["current", "new"], "properties": {
            "current": {"type": "string"}, "new": {"type": "string", "minLength": 10, "maxLength": 256}
        }},
        "Training": {"type": "object", "required": ["configured", "knowledgeEntries", "status", "runs"], "properties": {
            "configured": {"type": "boolean", "description": "Whether graphql_url and graphql_query are set."},
            "knowledgeEntries": {"type": "integer", "minimum": 0},
            "status": {"type": "object", "required": ["running"], "properties": {
                "running": {"type": "boolean"},
                "startedAt": {"type": ["string", "null"]}, "pages": {"type": "integer"}, "entries": {"type": "integer"},
                "lastSuccessAt": {"type": ["string", "null"]}, "entryCount": {"type": ["integer", "null"]},
                "lastErrorAt": {"type": ["string", "null"]}, "lastError": {"type": ["string", "null"]}
            }},
            "runs": {"type": "array", "items": {"type": "object", "required": ["owner", "startedAt", "finishedAt", "pages", "entries"], "properties": {
                "owner": {"type": "string"}, "startedAt": {"type": "string"}, "finishedAt": {"type": "string"},
                "seconds": {"type": "number"}, "pages": {"type": "integer"}, "entries": {"type": "integer"},
                "error": {"type": ["string", "null"]}
            }}}
        }},
        "Usage": {"type": "object", "required": ["dailyBudget", "days"], "properties": {
            "dailyBudget": {"type": "integer"},
            "days": {"type": "array", "items": {"type": "object", "required": ["day", "answers", "promptTokens", "completionTokens", "totalTokens"], "properties": {
                "day": {"type": "string", "format": "date"}, "answers": {"type": "integer"},
                "promptTokens": {"type": "integer"}, "completionTokens": {"type": "integer"}, "totalTokens": {"type": "integer"}
            }}}
        }},
        "DeadLetters": {"type": "object", "required": ["deadLetters"], "properties": {"deadLetters": {"type": "array", "items": {
            "type": "object", "required": ["id", "kind", "createdAt", "attempts"], "properties": {
                "id": {"type": "integer"}, "kind": {"type": "string"}, "createdAt": {"type": "string"},
                "deadAt": {"type": ["string", "null"]}, "attempts": {"type": "integer"}, "lastError": {"type": ["string", "null"]}
            }
        }}}},
        "CheckInput": {"type": "object", "properties": {
            "query": {"type": ["string", "null"], "description": "The catalog test's sample search term (default: lamp)."}
        }},
        "CheckReport": {"type": "object", "required": ["integration", "ok", "summary", "elapsed_ms"], "properties": {
            "integration": {"type": "string", "enum": super::checks::INTEGRATIONS},
            "ok": {"type": "boolean"},
            "summary": {"type": "string"},
            "problem": {"type": "object", "required": ["where", "what", "fix"], "properties": {
                "where": {"type": "string", "description": "The service and the setting that names it."},
                "what": {"type": "string", "description": "What failed (at most a short excerpt of the upstream's answer)."},
                "fix": {"type": "string", "description": "What to change."}
            }},
            "details": {"type": "object", "description": "What was found: the board's lists and labels, products, the model's reply, the vectors' size."},
            "elapsed_ms": {"type": "integer", "minimum": 0}
        }}
    });
    all.as_object_mut().expect("an object").extend(visitor_schemas());
    all
}

/// The schemas of access and erasure requests.
fn visitor_schemas() -> Map<String, Value> {
    let schemas = json!({
        "VisitorRequest": {"type": "object", "required": ["visitor"], "properties": {
            "visitor": {"type": "string", "minLength": 1, "maxLength": 320, "description": "A conversation id (c_…) or an email address."},
            "client": {"type": ["string", "null"], "description": "Only this client's conversations (its uid)."}
        }},
        "VisitorExport": visitor_export(),
        "VisitorErasure": {"type": "object", "required": ["conversations", "deleted", "upstream"], "properties": {
            "conversations": {"type": "array", "items": {"type": "object", "required": ["client", "conversationId"], "properties": {
                "client": {"type": "string"}, "conversationId": {"type": "string"}
            }}},
            "deleted": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0},
                "description": "Rows deleted per table (every table holding visitor data)."},
            "upstream": {"$ref": "#/components/schemas/Upstream"}
        }},
        "Upstream": {"type": "object", "required": ["chatwootConversations", "trelloCards"],
            "description": "What exists at the operator's services for the visitor: aia-chat does not delete there.",
            "properties": {
            "chatwootConversations": {"type": "array", "items": {"type": "object",
                "required": ["client", "conversationId", "chatwootConversationId", "chatwootContactId", "url"], "properties": {
                "client": {"type": "string"}, "conversationId": {"type": "string"},
                "chatwootConversationId": {"type": "integer"}, "chatwootContactId": {"type": ["integer", "null"]},
                "url": {"type": ["string", "null"], "description": "The conversation in Chatwoot (when operator_account_id is set)."}
            }}},
            "trelloCards": {"type": "array", "items": {"type": "object",
                "required": ["client", "conversationId", "title", "reference", "url"], "properties": {
                "client": {"type": "string"}, "conversationId": {"type": "string"}, "title": {"type": "string"},
                "reference": {"type": ["string", "null"]}, "url": {"type": "string"}
            }}}
        }},
    });
    match schemas {
        Value::Object(map) => map,
        _ => unreachable!("an object"),
    }
}

/// The schema of an access request's answer (`privacy::Export`).
fn visitor_export() -> Value {
    let text_or_null = json!({"type": ["string", "null"]});
    let message = json!({"type": "object",
        "required": ["seq", "role", "text", "at", "clientId", "replyTo", "source", "entryId", "feedback", "author", "attachments", "products"],
        "properties": {
            "seq": {"type": "integer"}, "role": {"type": "string", "enum": ["visitor", "assistant", "operator", "system"]},
            "text": {"type": "string"}, "at": {"type": "string"}, "clientId": text_or_null,
            "replyTo": {"type": ["integer", "null"]}, "source": text_or_null, "entryId": text_or_null,
            "feedback": {"type": ["string", "null"], "enum": ["up", "down", null]},
            "author": {"type": ["object", "null"], "required": ["name", "avatarUrl"], "properties": {
                "name": {"type": "string"}, "avatarUrl": text_or_null
            }},
            "attachments": {"type": "array", "items": {"type": "object", "required": ["name", "url"], "properties": {
                "name": {"type": "string"}, "url": {"type": "string"}
            }}},
            "products": {"type": "array", "items": {"type": "object", "required": ["name", "url"], "properties": {
                "name": {"type": "string"}, "url": {"type": "string"}, "price": {"type": "string"}, "currency": {"type": "string"},
                "image_url": {"type": "string"}, "in_stock": {"type": "boolean"}
            }}}
        }
    });
    let task = json!({"type": "object",
        "required": ["title", "summary", "category", "contact", "page", "state", "reference", "url", "createdAt", "updatedAt", "lastError"],
        "properties": {
            "title": {"type": "string"}, "summary": {"type": "string"}, "category": text_or_null,
            "contact": text_or_null, "page": text_or_null,
            "state": {"type": "string", "enum": ["proposed", "queued", "created", "declined", "failed"]},
            "reference": text_or_null, "url": text_or_null, "createdAt": {"type": "string"}, "updatedAt": {"type": "string"},
            "lastError": text_or_null
        }
    });
    let conversation = json!({"type": "object",
        "required": ["conversationId", "startedAt", "visitor", "messages", "tasks", "operator", "pendingDeliveries", "tokens"],
        "properties": {
            "conversationId": {"type": "string"}, "startedAt": {"type": "string"},
            "visitor": {"type": "object", "required": ["name", "email", "verified"], "properties": {
                "name": text_or_null, "email": text_or_null, "verified": {"type": "boolean"}
            }},
            "messages": {"type": "array", "items": message},
            "tasks": {"type": "array", "items": task},
            "operator": {"type": ["object", "null"],
                "required": ["state", "handoffs", "chatwootContactId", "chatwootConversationId", "updatedAt"], "properties": {
                "state": {"type": "string", "enum": ["bot", "waiting", "human"]}, "handoffs": {"type": "integer"},
                "chatwootContactId": {"type": ["integer", "null"]}, "chatwootConversationId": {"type": ["integer", "null"]},
                "updatedAt": {"type": "string"}
            }},
            "pendingDeliveries": {"type": "array", "items": {"type": "object",
                "required": ["kind", "payload", "createdAt", "attempts", "lastError", "deadAt"], "properties": {
                "kind": {"type": "string"}, "payload": {"description": "The delivery as queued (JSON)."},
                "createdAt": {"type": "string"}, "attempts": {"type": "integer"}, "lastError": text_or_null, "deadAt": text_or_null
            }}},
            "tokens": {"type": "integer", "description": "Model tokens the conversation's answers cost."}
        }
    });
    json!({"type": "object", "required": ["exportedAt", "clients", "upstream"], "properties": {
        "exportedAt": {"type": "string"},
        "clients": {"type": "array", "items": {"type": "object", "required": ["client", "conversations"], "properties": {
            "client": {"type": "string"}, "conversations": {"type": "array", "items": conversation}
        }}},
        "upstream": {"$ref": "#/components/schemas/Upstream"}
    }})
}
