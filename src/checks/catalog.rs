//! The catalog check: one product search in the client's catalog, as a visitor's question
//! about products would run it.

use serde_json::{Value, json};

use super::{Outcome, Subject, Toolkit, failed, passed};

pub(super) async fn check(kit: &Toolkit<'_>, client: Subject<'_>, query: Option<&str>) -> Outcome {
    let catalog = match crate::catalog::setup::build(client.uid, client.settings, kit.keys, kit.catalog_http) {
        Ok(Some(catalog)) => catalog,
        Ok(None) => {
            return failed(
                "No product catalog is configured.",
                "Products (catalog) settings",
                "neither product_graphql_url nor graphql_url is set",
                "Set product_graphql_url (or graphql_url for the same Magento store).",
            )
            .unconfigured();
        }
        Err(why) => {
            return failed(
                "The catalog settings cannot be used.",
                "Products (catalog) settings",
                why,
                "Correct the setting named (product_graphql_url, product_fields, store_url or product_headers).",
            );
        }
    };
    let term = query.map(str::trim).filter(|q| !q.is_empty()).unwrap_or("lamp");
    match catalog.search(term, &Default::default()).await {
        Ok(products) => {
            let shown: Vec<Value> =
                products.iter().take(5).map(|p| json!({"name": p.name, "url": p.url, "price": p.price})).collect();
            let mut o = passed(
                format!("The catalog answered: {} products for \"{term}\".", products.len()),
                json!({"query": term, "products": shown}),
            );
            o.notes.extend(products.iter().take(3).map(|p| format!("product: {} ({})", p.name, p.url)));
            o
        }
        Err(e) => failed(
            "The catalog search failed.",
            format!("product catalog ({})", client.settings.get("product_graphql_url")),
            e.to_string(),
            "Check product_graphql_url, product_query and product_headers.",
        ),
    }
}
