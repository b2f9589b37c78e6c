//! What every table keeps about visitors, in one list: an access request exports and an
//! erasure request deletes exactly the tables marked [`Rule::Visitor`], and a test compares
//! this list with the database's own catalogue, so a new table cannot ship without a rule.

/// How a table is treated by access and erasure requests (and retention).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Rows of one visitor's conversation, found by `session_column` (the session's id):
    /// exported, and deleted by an erasure request and by retention.
    Visitor {
        /// The column holding the session's id (`id` for `sessions` itself).
        session_column: &'static str,
    },
    /// Totals per client and day with nothing that names or quotes a visitor: kept, because a
    /// budget must not forget tokens already spent.
    Aggregate,
    /// The shop's own configuration and knowledge: no visitor data.
    Client,
    /// Admin accounts, their grants and signed-in browsers: the shop's staff, not visitors.
    Admin,
    /// Bookkeeping of the server itself (schema versions, leases, delivery ids): no visitor data.
    Operational,
}

/// One table and why it is treated so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRule {
    pub table: &'static str,
    pub rule: Rule,
    /// Why, in a few words (shown by tests that fail).
    pub why: &'static str,
}

const fn visitor(table: &'static str, session_column: &'static str, why: &'static str) -> TableRule {
    TableRule { table, rule: Rule::Visitor { session_column }, why }
}

const fn other(table: &'static str, rule: Rule, why: &'static str) -> TableRule {
    TableRule { table, rule, why }
}

/// Every table of both dialects. Visitor tables are listed children first: an erasure deletes
/// in this order, so it does not depend on foreign keys cascading.
pub const TABLES: &[TableRule] = &[
    visitor("messages", "session_id", "the conversation's messages, ratings, attachments and product cards"),
    visitor("tasks", "session_id", "task requests with the visitor's contact details and the card's link"),
    visitor("operator_outbox", "session_id", "queued deliveries to Chatwoot, whose payloads quote messages"),
    visitor("operator_links", "session_id", "the link to the Chatwoot contact and conversation"),
    visitor("sessions", "id", "the session with the visitor's name and email (identify)"),
    other("model_usage", Rule::Aggregate, "tokens per client and day"),
    other("clients", Rule::Client, "the websites"),
    other("client_settings", Rule::Client, "the websites' settings"),
    other("knowledge_entries", Rule::Client, "the shop's FAQ"),
    other("knowledge_vectors", Rule::Client, "embeddings of the shop's FAQ texts"),
    other("training_status", Rule::Client, "training progress"),
    other("training_runs", Rule::Client, "training history"),
    other("model_status", Rule::Client, "the client's last model error"),
    other("admins", Rule::Admin, "admin accounts"),
    other("admin_clients", Rule::Admin, "which clients an admin manages"),
    other("admin_sessions", Rule::Admin, "signed-in admin browsers"),
    other("meta", Rule::Operational, "the secret key's fingerprint"),
    other("webhook_deliveries", Rule::Operational, "Chatwoot delivery ids seen in the last day"),
    other("job_leases", Rule::Operational, "which node runs each periodic job"),
    other("_sqlx_migrations", Rule::Operational, "applied schema migrations"),
    other("sqlite_sequence", Rule::Operational, "SQLite's AUTOINCREMENT counters (SQLite only)"),
];

/// The rule of `table`, if the list has one.
pub fn rule(table: &str) -> Option<Rule> {
    TABLES.iter().find(|t| t.table == table).map(|t| t.rule)
}

/// The visitor tables with their session column, in deletion order.
pub fn visitor_tables() -> impl Iterator<Item = (&'static str, &'static str)> {
    TABLES.iter().filter_map(|t| match t.rule {
        Rule::Visitor { session_column } => Some((t.table, session_column)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_once_and_sessions_deleted_last() {
        let mut names: Vec<&str> = TABLES.iter().map(|t| t.table).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TABLES.len(), "a table listed twice");
        assert_eq!(visitor_tables().last(), Some(("sessions", "id")), "children go before their session");
    }
}
