//! keyway's own responses (errors it decides on before or instead of the upstream's).

use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::error::ErrorResponse;
use crate::observe::request_id::HEADER;

/// The request's id (set on the request when it arrived), for keyway's own answers too.
fn request_id(session: &Session) -> Option<http::HeaderValue> {
    session.req_header().headers.get(HEADER).cloned()
}

/// Writes a JSON error and closes the connection afterwards: the request body may be unread,
/// so the connection cannot safely carry another request.
pub async fn error(session: &mut Session, resp: &ErrorResponse) {
    error_with(session, resp, &[]).await
}

/// `error` with extra response headers.
pub async fn error_with(
    session: &mut Session,
    resp: &ErrorResponse,
    extra: &[(http::HeaderName, http::HeaderValue)],
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
        && request_id(session).is_none_or(|id| header.insert_header(HEADER, id).is_ok());
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
