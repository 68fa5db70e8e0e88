//! The admin API's requests and answers, independent of the server that carries them (its own
//! listener, or the proxy's): a method, a path, a query, headers and a JSON body in; a status
//! and a JSON body out. Errors have the OpenAI shape keyway's other refusals use (and the
//! Portkey SDK reads): `{"error":{"message","type","param","code"}}`, `param` naming the field.

use http::HeaderMap;
use serde_json::{json, Value};

#[derive(Debug)]
pub struct AdminRequest {
    pub method: http::Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdminResponse {
    pub status: u16,
    pub body: Value,
}

impl AdminResponse {
    pub fn ok(body: Value) -> AdminResponse {
        AdminResponse { status: 200, body }
    }
}

/// A refused admin request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    pub code: &'static str,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            code,
        }
    }

    /// A 400 naming `field`.
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: format!("{field}: {}", message.into()),
            param: Some(field.to_owned()),
            code: "invalid_request",
        }
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(404, "not_found", format!("no {what}"))
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "store_unavailable", message)
    }

    pub fn response(&self) -> AdminResponse {
        let kind = match self.status {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            409 => "conflict_error",
            503 => "service_unavailable",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        };
        AdminResponse {
            status: self.status,
            body: json!({"error": {"message": self.message, "type": kind,
                "param": self.param, "code": self.code}}),
        }
    }
}

/// The query's value (decoded) of the first of `names` present.
pub fn query_param(query: Option<&str>, names: &[&str]) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| names.contains(&k.as_ref()))
        .map(|(_, v)| v.into_owned())
}

/// One page: `current_page` (or `currentPage`, from 0) and `page_size` (or `pageSize`, 1–100,
/// default 50) → (offset, limit).
pub fn page(query: Option<&str>) -> Result<(usize, usize), ApiError> {
    let num = |names: &[&str], field: &str, default: usize| -> Result<usize, ApiError> {
        match query_param(query, names).as_deref() {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| ApiError::field(field, "must be a whole number")),
        }
    };
    let size = num(&["page_size", "pageSize"], "page_size", 50)?;
    if !(1..=100).contains(&size) {
        return Err(ApiError::field("page_size", "must be between 1 and 100"));
    }
    let current = num(&["current_page", "currentPage"], "current_page", 0)?;
    Ok((current.saturating_mul(size), size))
}

/// The list answer Portkey's SDK parses: `{"object":"list","total":N,"data":[…]}`.
pub fn list(items: Vec<Value>, query: Option<&str>) -> Result<AdminResponse, ApiError> {
    let (offset, limit) = page(query)?;
    let total = items.len();
    let data: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    Ok(AdminResponse::ok(
        json!({"object": "list", "total": total, "data": data}),
    ))
}

/// The body as a JSON object; `{}` for an empty body.
pub fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::new(
            400,
            "invalid_json",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            400,
            "invalid_json",
            format!(
                "the body is not valid JSON (line {} column {})",
                e.line(),
                e.column()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_query_names() {
        assert_eq!(page(None).unwrap(), (0, 50));
        assert_eq!(page(Some("current_page=2&page_size=10")).unwrap(), (20, 10));
        assert_eq!(page(Some("currentPage=1&pageSize=5")).unwrap(), (5, 5));
        assert_eq!(page(Some("")).unwrap(), (0, 50));
        assert_eq!(
            page(Some("page_size=0")).unwrap_err().param.as_deref(),
            Some("page_size")
        );
        assert!(page(Some("current_page=x")).is_err());
        let r = list(
            (0..7).map(|i| json!(i)).collect(),
            Some("current_page=1&page_size=3"),
        )
        .unwrap();
        assert_eq!(r.body, json!({"object":"list","total":7,"data":[3,4,5]}));
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(object(b"").unwrap().is_empty());
        assert_eq!(object(b"[1]").unwrap_err().status, 400);
        assert!(object(b"{\"a\":")
            .unwrap_err()
            .message
            .contains("not valid JSON"));
        let e = ApiError::field("name", "is required").response();
        assert_eq!(e.body["error"]["param"], "name");
        assert_eq!(e.status, 400);
    }
}
