//! The integration tests: one binary (linking the dependency graph once), each module a group.
//! Every test starts the real server on port 0 and talks to it over HTTP and WebSocket.

mod catalog_fake;
mod chatwoot_fake;
mod embeddings_fake;
mod graphql_fake;
mod model_fake;
mod support;
mod trello_fake;

mod admin_api;
mod admin_browser;
mod admin_checks;
mod admin_operations;
mod bad_input;
mod browser;
mod cable;
mod catalog;
mod catalog_client;
mod chat;
mod chatwoot_client;
mod cli;
mod cluster;
mod crash;
mod doctor;
mod embeddings_client;
mod handoff;
mod hostile;
mod metrics;
mod model;
mod origins;
mod resume;
mod semantic;
mod shutdown;
mod store;
mod tasks;
mod training;
mod trello_client;
mod visitor;
mod webhook;
mod widget_frames;
