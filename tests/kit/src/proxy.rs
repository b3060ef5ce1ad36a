//! How this run drives the proxy under test.

/// Whether this run serves plain HTTP/1.1 by the fast path (the default), or
/// sends every request through hyper (`SIESTA_HTTP1_FAST_PATH=false`, which
/// `make test` runs as a second pass of tests/proxy.rs and tests/proxy_attacks.rs).
pub fn fast_path() -> bool {
    std::env::var("SIESTA_HTTP1_FAST_PATH").map_or(true, |v| v != "false")
}
