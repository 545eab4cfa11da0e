//! The OpenAPI document: generated from the handlers, committed, served,
//! and rendered by an offline reference page.

use reqwest::StatusCode;

use crate::helpers::{json, spawn_app};

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let generated = serde_json::to_value(latchkey::api::openapi()).expect("spec");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json"),
    )
    .expect("JSON");
    assert!(
        generated == committed,
        "openapi/openapi.json is stale; regenerate it with:\n    cargo run -q -- openapi > openapi/openapi.json"
    );
}

#[test]
fn every_operation_documents_its_errors_and_every_path_parameter() {
    let spec = serde_json::to_value(latchkey::api::openapi()).expect("spec");
    assert_eq!(spec["openapi"], "3.1.0");
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                // The hosted pages succeed with a redirect (SPEC §9).
                responses
                    .keys()
                    .any(|s| s.starts_with('2') || s.starts_with('3')),
                "{method} {path} success"
            );
            if path.starts_with("/admin") || path.contains("/me/") || path.ends_with("/check") {
                for status in ["401", "403"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} documents {status}"
                    );
                }
            }
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            for segment in path.split('/').filter(|s| s.starts_with('{')) {
                let name = segment.trim_matches(|c| c == '{' || c == '}');
                assert!(declared.contains(&name), "{method} {path} declares {name}");
            }
            assert!(
                op["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path} has a tag"
            );
        }
    }
    let codes = spec["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("code enum");
    for code in [
        "token_missing",
        "session_revoked",
        "forbidden",
        "invalid_grant",
        "store_unavailable",
    ] {
        assert!(codes.iter().any(|c| c == code), "{code}");
    }
}

#[tokio::test]
async fn the_document_and_the_reference_page_are_served_by_latchkey_itself() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("spec");
    assert_eq!(res.status(), StatusCode::OK);
    let served = json(res).await;
    assert_eq!(
        served,
        serde_json::to_value(latchkey::api::openapi()).expect("spec")
    );

    let res = app.http.get(app.url("/docs/")).send().await.expect("docs");
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.expect("html");
    assert!(page.contains("swagger-ui"), "{page}");
    // Every script and stylesheet the page loads comes from latchkey.
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in page.split(attr).skip(1) {
            let url = part.split('"').next().unwrap_or_default();
            assert!(
                !url.starts_with("http://")
                    && !url.starts_with("https://")
                    && !url.starts_with("//"),
                "external asset {url}"
            );
            assets.push(url.trim_start_matches("./").to_owned());
        }
    }
    assert!(!assets.is_empty());
    for asset in assets {
        let res = app
            .http
            .get(app.url(&format!("/docs/{asset}")))
            .send()
            .await
            .expect("asset");
        assert_eq!(res.status(), StatusCode::OK, "{asset}");
    }
    let init = app
        .http
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .expect("init");
    assert!(init.text().await.expect("js").contains("/openapi.json"));
}

#[tokio::test]
async fn a_known_path_with_another_method_is_405_naming_the_allowed_ones() {
    let app = spawn_app().await;
    let res = app
        .http
        .delete(app.url("/tenants/system/oauth/token"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        res.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    assert_eq!(json(res).await["code"], "method_not_allowed");
    let res = app
        .http
        .put(app.url("/admin/tenants/acme/users/someone"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = res
        .headers()
        .get("allow")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for m in ["GET", "PATCH", "DELETE"] {
        assert!(allow.contains(m), "{allow}");
    }
}

#[test]
fn the_readme_configuration_table_lists_exactly_the_variables_latchkey_reads() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README");
    let table: Vec<&str> = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("configuration section")
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|v| v.starts_with("LATCHKEY_"))
        .collect();
    let known: Vec<&str> = latchkey::config::VARIABLES
        .iter()
        .map(|(v, _)| *v)
        .collect();
    for v in &known {
        assert!(
            table.contains(v),
            "{v} is missing from the README configuration table"
        );
    }
    for v in &table {
        assert!(
            known.contains(v),
            "the README documents {v}, which latchkey does not read"
        );
    }
}

#[tokio::test]
async fn docs_without_the_slash_leads_to_the_reference_page() {
    let app = spawn_app().await;
    let res = app.http.get(app.url("/docs")).send().await.expect("docs");
    assert_eq!(res.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        res.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/docs/")
    );
    let res = app.http.get(app.url("/docs/")).send().await.expect("docs");
    assert_eq!(res.status(), StatusCode::OK);
}
