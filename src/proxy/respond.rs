//! keyway's own responses (errors it decides on before or instead of the upstream's).

use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::error::ErrorResponse;
use crate::observe::request_id::NAME;

/// Writes a JSON error, with the request's id, and closes the connection afterwards: the
/// request body may be unread, so the connection cannot safely carry another request.
pub async fn error(session: &mut Session, resp: &ErrorResponse, id: Option<&HeaderValue>) {
    error_with(session, resp, &[], id).await
}

/// `error` with extra response headers.
pub async fn error_with(
    session: &mut Session,
    resp: &ErrorResponse,
    extra: &[(http::HeaderName, HeaderValue)],
    id: Option<&HeaderValue>,
) {
    let body = resp.body();
    let mut header = match ResponseHeader::build(resp.status, Some(5)) {
        Ok(h) => h,
        Err(_) => return,
    };
    let ok = header
        .insert_header("content-type", "application/json")
        .is_ok()
        && header.insert_header("content-length", body.len()).is_ok()
        && resp
            .www_authenticate
            .is_none_or(|v| header.insert_header("www-authenticate", v).is_ok())
        && extra
            .iter()
            .all(|(k, v)| header.insert_header(k.clone(), v.clone()).is_ok())
        && id.is_none_or(|id| header.insert_header(NAME, id.clone()).is_ok());
    if !ok {
        return;
    }
    session.set_keepalive(None);
    if session
        .write_response_header(Box::new(header), false)
        .await
        .is_ok()
    {
        let _ = session.write_response_body(Some(body), true).await;
    }
}
