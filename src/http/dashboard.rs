//! `GET /`: the dashboard, one self-contained page (no CDN) that polls the JSON API.

use actix_web::HttpResponse;

use super::Answer;

/// The dashboard: one self-contained page (no CDN) that polls the JSON API.
const DASHBOARD: &str = include_str!("../dashboard/index.html");

/// The page holds no data (it asks the API, with the token when one is needed), so it is
/// served to anyone who can reach the port.
pub(super) async fn dashboard() -> Answer {
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"))
        .body(DASHBOARD))
}
