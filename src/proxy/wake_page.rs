//! The small "waking up" page a browser gets while its namespace wakes: 503,
//! `Retry-After` and an automatic refresh, so the next load reaches the app.
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

/// Seconds before the browser tries again.
pub const RETRY_AFTER_SECS: u32 = 3;

/// A browser navigation: GET or HEAD whose `Accept` prefers `text/html` to
/// anything else it lists.
pub fn wants_page(method: &str, accept: Option<&str>) -> bool {
    if method != "GET" && method != "HEAD" {
        return false;
    }
    let Some(accept) = accept else {
        return false;
    };
    let mut html = 0.0f32;
    let mut best_other = 0.0f32;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
            })
            .next()
            .unwrap_or(1.0);
        match media.as_str() {
            "text/html" | "application/xhtml+xml" => html = html.max(q),
            "*/*" | "text/*" => {}
            _ => best_other = best_other.max(q),
        }
    }
    html > 0.0 && html >= best_other
}

/// Escape text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The page itself; `host` is echoed, escaped and cut short.
pub fn page(host: &str) -> Response<Bytes> {
    let host = escape(&crate::annotations::truncate(host, 100));
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"{RETRY_AFTER_SECS}\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>Waking up {host}</title>\
<style>body{{font-family:system-ui,sans-serif;margin:20vh auto;max-width:32em;text-align:center;color:#333}}</style></head>\
<body><h1>Waking up&hellip;</h1><p><b>{host}</b> was asleep to save resources. It is starting now; this page reloads by itself.</p></body></html>\n"
    );
    let mut r = Response::new(Bytes::from(body));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &'static str) -> Option<&'static str> {
        Some(v)
    }

    #[test]
    fn browsers_get_the_page_and_api_clients_do_not() {
        let firefox = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_page("GET", accept(firefox)));
        assert!(!wants_page("POST", accept(firefox)));
        assert!(!wants_page("GET", accept("application/json")));
        assert!(!wants_page("GET", accept("*/*")));
        assert!(!wants_page(
            "GET",
            accept("application/json, text/html;q=0.5")
        ));
        assert!(!wants_page("GET", None));
    }

    #[test]
    fn the_echoed_host_is_escaped() {
        let r = page("<script>alert('x')</script>.example.test");
        let body = std::str::from_utf8(r.body()).unwrap();
        assert!(!body.contains("<script>"));
        assert!(body.contains("&lt;script&gt;"));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }
}
