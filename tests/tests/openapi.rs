//! The OpenAPI document served by the real binary validates as OpenAPI 3.1, and every operation
//! it lists is served by the router.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;
use toolgate_tests::{Server, client, code};

const VALIDATE: &str = "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')";

#[tokio::test]
async fn the_document_validates_and_every_operation_is_served() -> anyhow::Result<()> {
    let server = Server::start(&[("TOOLGATE_HTTP_RATE_LIMITS_GENERAL_REQUESTS", "1000")])?;
    let res = client().get(server.url("/api/v1/openapi.json")).send().await?;
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await?;
    assert_eq!(doc["openapi"], "3.1.0");

    let file = server.data_path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc)?)?;
    let out = Command::new("python3").args(["-c", VALIDATE]).arg(&file).output().map_err(|e| {
        anyhow::anyhow!("cannot run python3 ({e}); the validator is `pip install openapi-spec-validator`")
    })?;
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document (or is missing: `pip install openapi-spec-validator`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        let concrete = path.replace("{username}", "nobody").replace("{name}", "nothing");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes())?;
            let res = client().request(method.clone(), server.url(&concrete)).send().await?;
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            assert!(
                !matches!(code(&body), "route_not_found" | "method_not_allowed"),
                "{method} {path} is documented but not served: {status} {body}"
            );
        }
    }
    assert!(operations >= 15, "only {operations} operations documented");
    Ok(())
}
