//! The server's own plain HTML pages (the preference centre): one escaper, from
//! `missive_core::html`, and a small self-contained page with its headers. The console has
//! its own layout (`console::layout`).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

pub use missive_core::html::escape;

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · missive</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}\
         table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ccc;padding:.3rem;text-align:left;font-size:.9rem}}\
         label{{display:block;margin:.5rem 0 .2rem}}input[type=password],input[type=text]{{width:100%;max-width:30rem;padding:.4rem}}\
         button{{padding:.4rem 1rem;margin-top:.5rem}}.error{{color:#a00}}\
         fieldset{{margin:1rem 0;padding:.5rem 1rem}}legend{{font-weight:600}}\
         input[type=checkbox]+label,input[type=radio]+label{{display:inline;margin-left:.3rem}}.note{{color:#555;font-size:.9rem}}</style></head>\
         <body><main><h1>{t}</h1>{body}</main></body></html>",
        t = escape(title)
    )
}

/// A plain page: not cached, not framed, no referrer, nothing loaded from elsewhere.
pub(crate) fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let mut res = (status, Html(page(title, body))).into_response();
    let h = res.headers_mut();
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    res
}
