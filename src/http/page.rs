//! `GET /`: the live cluster page, one self-contained HTML file (inline CSS and
//! JavaScript, no external assets, works offline).
//!
//! The page polls `/cluster` about twice a second and draws every member (role,
//! term, leader it follows, commit/applied/last log/snapshot index, how far it
//! lags the leader, whether it answers), a timeline of roles and terms over the
//! last minutes, a list of events with a plain-language explanation of the
//! latest one, and a box to send one command. If the server that served the
//! page goes down, it polls another member (which is why `/cluster` allows
//! other origins). Tests read its state from `data-*` attributes:
//! `#summary[data-leader][data-term]`, `.member[data-node][data-role]`, and
//! `body[data-ready]` after the first answer.

use super::response::Response;

/// The page's HTML.
pub const PAGE: &str = include_str!("page.html");

/// The page as a response.
pub fn response() -> Response {
    Response::new(200, "text/html; charset=utf-8", PAGE).with("Cache-Control", "no-store")
}
