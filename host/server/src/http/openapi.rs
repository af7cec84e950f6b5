//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes. Errors
//! every operation can meet (429, 500; 400/413/415 with a body) are added by [`CommonErrors`].

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use super::error::{ErrorBody, ErrorDetail};
use super::{actions_api, audit_api, auth_api, health, keys_api, metrics_api, policy_api, tools_api, users_api};

/// A role, as the API writes it.
#[derive(Debug, ToSchema)]
#[schema(as = Role)]
#[allow(dead_code)] // a schema only: the wire type is `model::Role`
pub enum RoleSchema {
    /// Read-only.
    #[schema(rename = "viewer")]
    Viewer,
    /// Safe and moderate actions.
    #[schema(rename = "operator")]
    Operator,
    /// Everything.
    #[schema(rename = "admin")]
    Admin,
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Toolgate API", description = "Run operations tools through policy, WebAssembly plugins and a sandbox."),
    paths(
        health::healthz, health::readyz, openapi_json, metrics_api::metrics,
        auth_api::register, auth_api::login, auth_api::logout, auth_api::refresh, auth_api::me, auth_api::change_password,
        users_api::list, users_api::create, users_api::update,
        keys_api::list, keys_api::create, keys_api::revoke,
        policy_api::evaluate, policy_api::decide,
        tools_api::list, tools_api::execute,
        actions_api::list, actions_api::get_one, actions_api::rollback,
        actions_api::approvals, actions_api::approve, actions_api::reject,
        audit_api::list,
    ),
    components(schemas(ErrorBody, ErrorDetail, RoleSchema)),
    modifiers(&CommonErrors),
    tags((name = "auth"), (name = "users"), (name = "keys"), (name = "policy"), (name = "tools"), (name = "actions"),
        (name = "approvals"), (name = "audit"), (name = "health")),
)]
pub struct ApiDoc;

/// This document, as JSON.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "health",
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Adds the bearer scheme and the errors any operation can return.
pub struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT or tgk_ API key").build(),
            ),
        );
        let error = |description: &str| {
            RefOr::T(
                ResponseBuilder::new()
                    .description(description)
                    .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorBody"))))
                    .build(),
            )
        };
        for item in openapi.paths.paths.values_mut() {
            for op in
                [&mut item.get, &mut item.post, &mut item.patch, &mut item.delete, &mut item.put].into_iter().flatten()
            {
                let responses = &mut op.responses.responses;
                responses.entry("429".into()).or_insert_with(|| error("rate limit hit; see `Retry-After`"));
                responses
                    .entry("500".into())
                    .or_insert_with(|| error("internal error (details in the server log only)"));
                if op.request_body.is_some() {
                    responses.entry("400".into()).or_insert_with(|| error("malformed JSON or unknown field"));
                    responses.entry("413".into()).or_insert_with(|| error("body larger than `http.body_limit_bytes`"));
                    responses.entry("415".into()).or_insert_with(|| error("body is not `application/json`"));
                }
                // OpenAPI requires a description on every response; the status says enough.
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        response.description = default_description(status).to_owned();
                    }
                }
            }
        }
    }
}

fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "success",
        "201" => "created",
        "400" => "invalid request",
        "401" => "missing, invalid, expired or revoked credentials (the code says which)",
        "403" => "the caller's role is not enough",
        "404" => "not found",
        "409" => "conflict",
        _ => "see the error code",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_serves() -> anyhow::Result<()> {
        let doc = serde_json::to_value(ApiDoc::openapi())?;
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for method in ["get", "post", "put", "patch", "delete"] {
                if item.get(method).is_some() {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let served: BTreeSet<(String, String)> =
            crate::http::routes().into_iter().map(|r| (r.method.to_string(), r.path.to_owned())).collect();
        assert_eq!(documented, served);
        assert_eq!(doc["openapi"], "3.1.0");
        Ok(())
    }

    #[test]
    fn every_operation_documents_its_errors() -> anyhow::Result<()> {
        let doc = serde_json::to_value(ApiDoc::openapi())?;
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                let responses = &op["responses"];
                for status in ["429", "500"] {
                    assert!(responses.get(status).is_some(), "{method} {path} lacks {status}");
                }
                if op.get("requestBody").is_some() {
                    for status in ["400", "413", "415"] {
                        assert!(responses.get(status).is_some(), "{method} {path} lacks {status}");
                    }
                }
                if op.get("security").is_some() {
                    assert!(responses.get("401").is_some(), "{method} {path} lacks 401");
                }
            }
        }
        Ok(())
    }
}
