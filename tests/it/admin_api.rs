//! The admin API over HTTP as the panel uses it: the first account, signing in and out, the
//! cookie's attributes, throttling, CSRF and cross-site refusals, roles, and clients CRUD with
//! write-only secrets.

use std::os::unix::fs::PermissionsExt;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{ADMIN_PASSWORD, TestApp, http, json_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_admin_gets_a_generated_password_only_its_owner_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = crate::support::log_path("first-admin");
    let server = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
        .env("AIA_DATA_DIR", dir.path())
        .env_remove("AIA_ADMIN_PASSWORD")
        .env_remove("AIA_SECRET_KEY")
        .env_remove("AIA_DATABASE_URL")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let _server = crate::shutdown::KillOnDrop(Some(server));
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..400 {
        if let Ok(r) = http().get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(ready, "the server never became ready");

    let file = dir.path().join("initial-admin-password");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the owner may read the password file");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_string();
    assert_eq!(password.len(), 20);
    let r = http()
        .post(format!("{base}/api/admin/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = r.json::<Value>().await.unwrap()["csrfToken"].as_str().unwrap().to_string();

    // A canary in every secret setting: none may come back in any page or answer, nor be logged.
    let mut secrets = serde_json::Map::new();
    for def in aia_chat::clients::SETTINGS.iter().filter(|d| d.secret()) {
        let canary = crate::support::canary(&format!("canary-{}-91c4", def.key));
        let value = match def.kind {
            aia_chat::clients::Kind::SecretHeaders => json!({"X-Canary": canary}).to_string(),
            _ => canary,
        };
        secrets.insert(def.key.to_string(), json!(value));
    }
    let r = http()
        .patch(format!("{base}/api/admin/clients/demo"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"settings": secrets}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut seen = r.text().await.unwrap();
    for path in [
        "/api/admin/clients",
        "/api/admin/clients/demo",
        "/api/admin/session",
        "/admin/clients",
        "/admin/clients/demo",
        "/",
        "/api/data/ai_chat_bot?clientUid=demo",
        "/js/ChatBot.js",
    ] {
        let r = http().get(format!("{base}{path}")).header("cookie", &cookie).header("origin", "http://localhost");
        let r = r.send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        seen.push_str(&r.text().await.unwrap());
    }
    let set = seen.matches("\"set\":true").count();
    assert!(set >= secrets.len(), "every secret reads as set");
    assert!(!seen.contains("canary"), "no secret in any page or answer");

    // A visitor's message text is not logged either (without --log-messages).
    let text = crate::support::canary("canary visitor text 3b8e05, please call me back");
    let mut ws =
        crate::support::connect_ws(&format!("ws://127.0.0.1:{port}/ws?clientUid=demo"), Some("http://localhost:8080"))
            .await
            .unwrap();
    ws.hello(None).await;
    ws.ask("c1", &text).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["client", "show", "demo"])
        .env("AIA_DATA_DIR", dir.path())
        .env_remove("AIA_SECRET_KEY")
        .env_remove("AIA_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("canary"));

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains(&file.display().to_string()), "the log names the file: {logs}");
    assert!(!logs.contains(&password), "the password is never logged");
    assert!(logs.contains("client settings changed"), "{logs}");
    assert!(!logs.contains("canary"), "no secret in the log: {logs}");

    // The generated password's file goes once the admin has a password of their own.
    let r = http()
        .post(format!("{base}/api/admin/session/password"))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"current": password, "new": "a password of my own 42"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(!file.exists(), "the initial password file is removed");
}

#[tokio::test]
async fn signing_in_sets_a_strict_cookie_and_signing_out_ends_the_session() {
    let app = TestApp::spawn().await;
    let (status, body) = json_of(app.admin_login("admin", "wrong password!").send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("invalid_credentials")));
    let (status, _) = json_of(app.admin_login("nobody", ADMIN_PASSWORD).send().await.unwrap()).await;
    assert_eq!(status, 401, "an unknown name is refused like a wrong password");

    let r = app.admin_login("Admin", ADMIN_PASSWORD).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    for attribute in ["aia_admin=", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http on loopback: no Secure");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["username"].as_str(), body["role"].as_str()), (Some("admin"), Some("server")));

    let behind_https =
        app.admin_login("admin", ADMIN_PASSWORD).header("x-forwarded-proto", "https").send().await.unwrap();
    assert!(behind_https.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));

    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let (status, me) = admin.get("/api/admin/session").await;
    assert_eq!((status, me["username"].as_str()), (200, Some("admin")));
    let unsigned =
        http().post(format!("{}/api/admin/logout", app.base)).header("cookie", &admin.cookie).send().await.unwrap();
    assert_eq!(unsigned.status(), 403, "logging out needs the CSRF token too");
    let r = admin.request(Method::POST, "/api/admin/logout").send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let (status, body) = admin.get("/api/admin/session").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("signed_out")));
    let (status, _) = json_of(http().get(format!("{}/api/admin/clients", app.base)).send().await.unwrap()).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn repeated_wrong_passwords_slow_the_login_down_per_account_and_address() {
    let app = TestApp::spawn_with(|s| s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let from = |ip: &'static str| move |r: reqwest::RequestBuilder| r.header("x-forwarded-for", ip);
    let attacker = from("203.0.113.9");
    for _ in 0..aia_chat::admin::throttle::FREE_FAILURES + 1 {
        let r = attacker(app.admin_login("admin", "guess-guess-guess")).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    // The next try must wait, even with the right password.
    let r = attacker(app.admin_login("admin", ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let (_, body) = json_of(r).await;
    assert_eq!(body["error"]["code"], "login_throttled");
    // Nobody else is locked out: the real admin elsewhere signs in at once.
    let r = from("198.51.100.7")(app.admin_login("admin", ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The wait doubles with each further failure, and ends.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(attacker(app.admin_login("admin", "guess-again-again")).send().await.unwrap().status(), 401);
    let r = attacker(app.admin_login("admin", ADMIN_PASSWORD)).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()["retry-after"].to_str().unwrap()), (429, "2"));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(attacker(app.admin_login("admin", ADMIN_PASSWORD)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn forged_and_cross_site_requests_change_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let (_, demo) = admin.get("/api/admin/clients/demo").await;
    let before = setting(&demo, "button_color")["value"].clone();
    let url = format!("{}/api/admin/clients/demo", app.base);
    let change = json!({"settings": {"button_color": "#ff0000"}});
    let no_token = http().patch(&url).header("cookie", &admin.cookie).json(&change).send().await.unwrap();
    let (status, body) = json_of(no_token).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("csrf_token_invalid")));
    let wrong = http().patch(&url).header("cookie", &admin.cookie).header("x-csrf-token", "forged").json(&change);
    assert_eq!(wrong.send().await.unwrap().status(), 403);
    let foreign = admin.request(Method::PATCH, "/api/admin/clients/demo").header("origin", "https://evil.example");
    let (status, body) = json_of(foreign.json(&change).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("cross_site_request")));
    let cross = admin.request(Method::PATCH, "/api/admin/clients/demo").header("sec-fetch-site", "cross-site");
    assert_eq!(cross.json(&change).send().await.unwrap().status(), 403);
    let login = app.admin_login("admin", ADMIN_PASSWORD).header("sec-fetch-site", "cross-site");
    assert_eq!(login.send().await.unwrap().status(), 403, "no sign-in from another site either");
    let (_, demo) = admin.get("/api/admin/clients/demo").await;
    assert_eq!(setting(&demo, "button_color")["value"], before, "nothing changed");
    // The same change with the token and from the panel's own origin goes through.
    let own = admin.request(Method::PATCH, "/api/admin/clients/demo").header("origin", app.base.as_str());
    let (status, demo) = json_of(own.json(&change).send().await.unwrap()).await;
    assert_eq!((status, setting(&demo, "button_color")["value"].as_str()), (200, Some("#ff0000")));
}

/// A setting of a client view, by key.
fn setting<'a>(client: &'a Value, key: &str) -> &'a Value {
    client["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["settings"].as_array().unwrap())
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no setting {key} in {client:#}"))
}

#[tokio::test]
async fn clients_are_created_changed_and_deleted_and_secrets_never_come_back() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let (status, list) = admin.get("/api/admin/clients").await;
    assert_eq!(status, 200);
    assert_eq!(list["clients"][0]["uid"], "demo");

    let (status, shop) = admin.call(Method::POST, "/api/admin/clients", json!({"uid": "shop-2"})).await;
    assert_eq!(status, 201, "{shop}");
    let groups: Vec<&str> = shop["groups"].as_array().unwrap().iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(groups, ["general", "model", "knowledge", "operator", "tasks", "catalog", "privacy"]);
    assert!(shop["connectCode"].as_str().unwrap().contains("clientUid=shop-2"));
    assert!(shop["webhookUrl"].as_str().unwrap().ends_with("/api/webhook/shop-2"));
    assert!(shop["listsUrl"].as_str().unwrap().ends_with("/api/tasks/lists?clientUid=shop-2"));
    let (status, dup) = admin.call(Method::POST, "/api/admin/clients", json!({"uid": "shop-2"})).await;
    assert_eq!((status, dup["error"]["code"].as_str()), (409, Some("client_exists")));
    let (status, _) = admin.call(Method::POST, "/api/admin/clients", json!({"uid": "no spaces"})).await;
    assert_eq!(status, 422);

    let canary = "sk-canary-7f3a9c1e";
    let change = json!({"settings": {
        "button_color": "#0A7CFF", "position": "bottom-left", "allowed_domains": "shop.example",
        "model_url": "http://127.0.0.1:9/v1", "model_token": canary
    }});
    let (status, shop) = admin.call(Method::PATCH, "/api/admin/clients/shop-2", change).await;
    assert_eq!(status, 200, "{shop}");
    assert!(!shop.to_string().contains(canary));
    assert_eq!(
        setting(&shop, "model_token"),
        &json!({"key": "model_token", "type": "password", "set": true, "follows": "model_url", "help": setting(&shop, "model_token")["help"]})
    );
    assert_eq!(setting(&shop, "button_color")["value"], "#0a7cff");
    assert_eq!(setting(&shop, "button_color")["isDefault"], false);
    assert!(shop["connectCode"].as_str().unwrap().contains("buttonColor=#0a7cff&bgColor=#ffffff&position=bottom-left"));
    let changed: Vec<&str> = shop["changes"].as_array().unwrap().iter().map(|c| c["key"].as_str().unwrap()).collect();
    assert_eq!(changed.len(), 5, "{changed:?}");
    assert_eq!(app.state.registry.get("shop-2").unwrap().settings.get("position"), "bottom-left", "live at once");

    // An empty secret keeps the stored one; null clears it.
    let (_, shop) =
        admin.call(Method::PATCH, "/api/admin/clients/shop-2", json!({"settings": {"model_token": ""}})).await;
    assert_eq!(setting(&shop, "model_token")["set"], true);
    assert!(shop.get("changes").is_none(), "nothing changed: {shop}");
    // A whole change is refused when one value is wrong, naming it.
    let bad = json!({"settings": {"bot_name": "Robo", "bg_color": "blue"}});
    let (status, body) = admin.call(Method::PATCH, "/api/admin/clients/shop-2", bad).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_setting")));
    assert!(body["error"]["message"].as_str().unwrap().starts_with("bg_color: "), "{body}");
    let (status, body) =
        admin.call(Method::PATCH, "/api/admin/clients/shop-2", json!({"settings": {"colour": "#fff"}})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("unknown_setting")));
    let (_, shop) = admin.get("/api/admin/clients/shop-2").await;
    assert_eq!(setting(&shop, "bot_name")["value"], "Assistant");
    let (_, shop) = admin
        .call(Method::PATCH, "/api/admin/clients/shop-2", json!({"settings": {"model_token": null, "position": null}}))
        .await;
    assert_eq!(setting(&shop, "model_token")["set"], false);
    assert_eq!(setting(&shop, "position")["isDefault"], true);
    // Malformed bodies get the API's own errors.
    let raw = admin.request(Method::PATCH, "/api/admin/clients/shop-2").header("content-type", "application/json");
    let (status, body) = json_of(raw.body("{not json").send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("malformed_json")));

    let r = admin.request(Method::DELETE, "/api/admin/clients/shop-2").send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (status, _) = admin.get("/api/admin/clients/shop-2").await;
    assert_eq!(status, 404);
    assert!(app.state.registry.get("shop-2").is_none());
}

#[tokio::test]
async fn a_client_admin_sees_and_changes_only_its_own_clients() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    admin.call(Method::POST, "/api/admin/clients", json!({"uid": "other-shop"})).await;
    let add = app.add_client_admin("owner@demo.example", "owner-password-1", &["demo"]);
    assert!(add.status.success(), "{}", String::from_utf8_lossy(&add.stderr));
    let listed = String::from_utf8(app.cli(&["admin", "list"]).stdout).unwrap();
    assert!(listed.contains("owner@demo.example\tclient\tdemo"), "{listed}");

    let owner = app.admin("owner@demo.example", "owner-password-1").await;
    let (_, list) = owner.get("/api/admin/clients").await;
    let uids: Vec<&str> = list["clients"].as_array().unwrap().iter().map(|c| c["uid"].as_str().unwrap()).collect();
    assert_eq!(uids, ["demo"]);
    let (status, _) = owner.get("/api/admin/clients/demo").await;
    assert_eq!(status, 200);
    // Another shop does not exist as far as this account can tell.
    let (status, body) = owner.get("/api/admin/clients/other-shop").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_client")));
    let (status, _) =
        owner.call(Method::PATCH, "/api/admin/clients/other-shop", json!({"settings": {"bot_name": "x"}})).await;
    assert_eq!(status, 404);
    let (status, body) = owner.call(Method::POST, "/api/admin/clients", json!({"uid": "mine"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("server_admin_only")));
    let r = owner.request(Method::DELETE, "/api/admin/clients/demo").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = owner.request(Method::GET, "/api/tasks/lists?clientUid=other-shop").send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Revoking takes effect on the next request; a new password signs out everywhere.
    assert!(app.cli(&["admin", "revoke", "owner@demo.example", "demo"]).status.success());
    let (status, _) = owner.get("/api/admin/clients/demo").await;
    assert_eq!(status, 404);
    let passwd = std::process::Command::new(env!("CARGO_BIN_EXE_aia-chat"))
        .args(["admin", "passwd", "owner@demo.example", "--generate"])
        .env("AIA_DATA_DIR", app.data_dir())
        .output()
        .unwrap();
    assert!(passwd.status.success());
    let (status, _) = owner.get("/api/admin/session").await;
    assert_eq!(status, 401);
    let last = app.cli(&["admin", "remove", "admin"]);
    assert!(!last.status.success(), "the last server admin stays");
}

#[tokio::test]
async fn the_task_lists_endpoint_needs_an_admin_who_manages_the_client() {
    let app = TestApp::spawn().await;
    let url = format!("{}/api/tasks/lists?clientUid=demo", app.base);
    let (status, body) = json_of(http().get(&url).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("signed_out")));
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    let (status, body) = admin.get("/api/tasks/lists?clientUid=demo").await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("tasks_not_configured")), "{body}");
}

#[tokio::test]
async fn the_openapi_document_describes_every_admin_route() {
    let app = TestApp::spawn().await;
    let (status, doc) = json_of(http().get(format!("{}/api/admin/openapi.json", app.base)).send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for p in [
        "/api/admin/login",
        "/api/admin/logout",
        "/api/admin/session",
        "/api/admin/clients",
        "/api/admin/clients/{uid}",
        "/api/admin/visitors/export",
        "/api/admin/visitors/delete",
    ] {
        assert!(paths.iter().any(|k| k.as_str() == p), "{p} documented");
    }
    let change = &doc["components"]["schemas"]["ClientChange"]["properties"]["settings"]["properties"];
    for def in aia_chat::clients::SETTINGS {
        assert!(change.get(def.key).is_some(), "{} documented", def.key);
    }
}

#[tokio::test]
async fn server_admins_manage_accounts_and_everyone_their_own_password() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin", ADMIN_PASSWORD).await;
    admin.call(Method::POST, "/api/admin/clients", json!({"uid": "shop-b"})).await;
    let new = json!({"username": "Owner@Shop.example", "password": "owner-password-1", "role": "client", "clients": ["demo"]});
    let (status, body) = admin.call(Method::POST, "/api/admin/accounts", new.clone()).await;
    assert_eq!((status, body["username"].as_str()), (201, Some("owner@shop.example")), "{body}");
    assert_eq!(admin.call(Method::POST, "/api/admin/accounts", new).await.0, 409);
    let short = json!({"username": "x", "password": "short", "role": "client"});
    let (status, body) = admin.call(Method::POST, "/api/admin/accounts", short).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_account")));
    let ghost = json!({"username": "y", "password": "long-enough-1", "role": "client", "clients": ["nope"]});
    assert_eq!(admin.call(Method::POST, "/api/admin/accounts", ghost).await.0, 422);

    let owner = app.admin("owner@shop.example", "owner-password-1").await;
    assert_eq!(owner.get("/api/admin/accounts").await.0, 403, "client admins don't manage accounts");
    let (_, list) = admin.get("/api/admin/accounts").await;
    let names: Vec<&str> =
        list["accounts"].as_array().unwrap().iter().map(|a| a["username"].as_str().unwrap()).collect();
    assert_eq!(names, ["admin", "owner@shop.example"]);
    assert!(!list.to_string().contains("argon2"), "no hashes");

    let path = "/api/admin/accounts/owner@shop.example";
    let (status, body) = admin.call(Method::PATCH, path, json!({"clients": ["shop-b"]})).await;
    assert_eq!((status, body["clients"].clone()), (200, json!(["shop-b"])), "{body}");
    assert_eq!(owner.get("/api/admin/clients/demo").await.0, 404, "demo taken away at once");
    assert_eq!(owner.get("/api/admin/clients/shop-b").await.0, 200);

    // Own password: the current one is checked, then every session ends.
    let wrong = json!({"current": "not-it-at-all", "new": "owner-password-2"});
    assert_eq!(owner.call(Method::POST, "/api/admin/session/password", wrong).await.0, 403);
    let right = json!({"current": "owner-password-1", "new": "owner-password-2"});
    let r = owner.request(Method::POST, "/api/admin/session/password").json(&right).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(owner.get("/api/admin/session").await.0, 401);
    let owner = app.admin("owner@shop.example", "owner-password-2").await;

    let r = admin.request(Method::DELETE, path).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(owner.get("/api/admin/session").await.0, 401, "a deleted account's session ends");
    let (status, body) =
        json_of(admin.request(Method::DELETE, "/api/admin/accounts/admin").send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("last_server_admin")));
}
