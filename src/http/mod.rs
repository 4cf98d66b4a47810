//! HTTP/1.1 on the server's one port: a JSON API, `/metrics` and a live
//! cluster page, beside the text protocol.

pub mod json;
pub mod request;
pub mod response;
