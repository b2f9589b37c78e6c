//! A client's catalog, from its settings: built once per settings version and kept, so its
//! short result cache serves repeated searches. Also the bridge from a found product to the
//! card stored with the answer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use super::search::{Catalog, CatalogConfig, Product, ProductMapping};
use crate::clients::ClientSettings;
use crate::clients::secrets::SecretBox;
use crate::registry::ClientRuntime;
use crate::store::ProductCard;

/// A client's catalog as built for one settings version: none configured, or why not.
type Built = (i64, Result<Option<Catalog>, String>);

/// Each client's catalog (or why it has none), by settings version.
#[derive(Default)]
pub struct Catalogs {
    built: Mutex<HashMap<i64, Built>>,
}

impl Catalogs {
    /// `client`'s catalog; `None` when it has no catalog (or a broken configuration, logged
    /// once per settings version).
    pub fn for_client(&self, client: &ClientRuntime, keys: &SecretBox, http: &reqwest::Client) -> Option<Catalog> {
        let mut built = self.built.lock().expect("catalogs lock");
        let version = client.row.settings_version;
        let entry = built.entry(client.row.id).or_insert_with(|| (version - 1, Ok(None)));
        if entry.0 != version {
            let made = build(&client.row.uid, &client.settings, keys, http);
            if let Err(why) = &made {
                tracing::warn!(client = %client.row.uid, error = %why, "the product catalog is misconfigured");
            }
            *entry = (version, made);
        }
        entry.1.as_ref().ok().cloned().flatten()
    }
}

/// The catalog `settings` describe: `Ok(None)` when none is configured (no
/// `product_graphql_url` and no `graphql_url`), `Err` saying which setting cannot be used.
pub fn build(
    uid: &str,
    s: &ClientSettings,
    keys: &SecretBox,
    http: &reqwest::Client,
) -> Result<Option<Catalog>, String> {
    let (url, headers_key) = match s.get("product_graphql_url") {
        "" => (s.get("graphql_url"), "graphql_headers"),
        own => (own, "product_headers"),
    };
    if url.is_empty() {
        return Ok(None);
    }
    let endpoint = url::Url::parse(url).map_err(|e| format!("product_graphql_url: {e}"))?;
    let mut config = CatalogConfig::new(endpoint);
    if !s.get("product_query").trim().is_empty() {
        config.query = s.get("product_query").to_string();
    }
    if !s.get("product_fields").trim().is_empty() {
        config.mapping =
            Some(ProductMapping::parse(s.get("product_fields")).map_err(|e| format!("product_fields: {e}"))?);
    }
    if !s.get("store_url").is_empty() {
        config.store_url = Some(url::Url::parse(s.get("store_url")).map_err(|e| format!("store_url: {e}"))?);
    }
    if let Some(text) = s.secret(keys, uid, headers_key) {
        let text = text.map_err(|e| format!("{headers_key}: {e}"))?;
        let map: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| format!("{headers_key}: {e}"))?;
        config.headers = map.into_iter().collect();
    }
    config.max_results = s.get("product_max_results").parse().unwrap_or(4);
    Catalog::new(config, http.clone()).map(Some).map_err(|e| e.to_string())
}

/// The card stored with an answer for a found product.
pub fn card(p: &Product) -> ProductCard {
    ProductCard {
        name: p.name.clone(),
        url: p.url.clone(),
        price: p.price.filter(|v| v.is_finite()).map(|v| v.to_string()),
        currency: p.currency.clone(),
        image_url: p.image_url.clone(),
        in_stock: p.in_stock,
    }
}
