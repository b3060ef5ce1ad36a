//! The one normalisation of a request target, applied on every path (the
//! HTTP/1.1 fast path, the pre-hold reader and hyper's path) before routing,
//! recording and forwarding:
//!
//! - a fragment (`#` and what follows) is never part of a request (RFC
//!   9112 3.2, RFC 3986 3.5): it is cut off, neither routed nor forwarded,
//!   as hyper's parser does before the request reaches the proxy;
//! - the query is not part of the path: routes, `ignorePaths` and activity
//!   see the path alone; the query is forwarded as it came;
//! - percent-encoded unreserved characters (`%41`, `%2E`, `%7E`, ...) are
//!   decoded (RFC 3986 6.2.2.2), so `%2e%2e` is the dot segment it spells;
//! - dot segments are removed (RFC 3986 5.2.4) and repeated slashes merged,
//!   as nginx does before matching locations;
//! - an encoded slash or backslash (`%2F`, `%5C`), an encoded NUL (`%00`), a
//!   raw backslash, or a target that is not a path (`*`, or no leading `/`)
//!   is refused with 400, unless the admin config allows encoded slashes.
//!
//! The upstream gets the normalised path, so what it serves is what was routed.
use std::borrow::Cow;

/// Why a target is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadTarget {
    /// Not origin-form (`*`, or no leading `/`).
    NotAPath,
    /// `%2F`, `%5C` or a raw `\`: a separator the route table cannot see.
    EncodedSeparator,
    /// `%00`, or a `%` not followed by two hex digits.
    BadEscape,
}

/// A normalised target: `path` for routing, `target` (path and query) to forward.
#[derive(Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The normalised target, borrowed when nothing changed.
    pub target: Cow<'a, str>,
    /// Where the path ends in `target`.
    path_len: usize,
}

impl Target<'_> {
    pub fn path(&self) -> &str {
        &self.target[..self.path_len]
    }

    /// Whether the upstream gets something other than what the client sent.
    pub fn changed(&self) -> bool {
        matches!(self.target, Cow::Owned(_))
    }
}

/// The value of one hex digit.
pub(super) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Normalise a request target (origin-form: path, then `?query`).
/// `allow_encoded_slashes`: keep `%2F` and `%5C` as they are instead of refusing.
pub fn normalize(raw: &str, allow_encoded_slashes: bool) -> Result<Target<'_>, BadTarget> {
    // One pass over the target: the query starts at the first `?`, a
    // fragment at the first `#` (before the query or in it).
    let b = raw.as_bytes();
    let (path_end, fragment) = match memchr::memchr2(b'?', b'#', b) {
        Some(i) if b[i] == b'#' => (i, Some(i)),
        Some(i) => (i, memchr::memchr(b'#', &b[i..]).map(|j| i + j)),
        None => (b.len(), None),
    };
    if let Some(end) = fragment {
        let cut = normalize(&raw[..end], allow_encoded_slashes)?;
        return Ok(Target {
            target: Cow::Owned(cut.target.into_owned()),
            path_len: cut.path_len,
        });
    }
    let (path, query) = raw.split_at(path_end);
    if !path.starts_with('/') {
        return Err(BadTarget::NotAPath);
    }
    let bytes = path.as_bytes();
    // The common case: nothing to decode, no dot segment, no double slash.
    let mut clean = true;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => return Err(BadTarget::EncodedSeparator),
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(BadTarget::BadEscape);
                };
                match (hi << 4) | lo {
                    0 => return Err(BadTarget::BadEscape),
                    b'/' | b'\\' if !allow_encoded_slashes => {
                        return Err(BadTarget::EncodedSeparator);
                    }
                    d if unreserved(d) => clean = false,
                    _ => {}
                }
            }
            b'/' if matches!(bytes.get(i + 1), Some(b'/')) => clean = false,
            b'.' if bytes[i - 1] == b'/' => {
                let rest = &bytes[i + 1..];
                if rest.is_empty()
                    || rest[0] == b'/'
                    || (rest[0] == b'.' && rest.get(1).is_none_or(|&c| c == b'/'))
                {
                    clean = false;
                }
            }
            _ => {}
        }
    }
    if clean {
        return Ok(Target {
            target: Cow::Borrowed(raw),
            path_len: path.len(),
        });
    }
    // Decode unreserved escapes, then remove dot segments and empty ones.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let d = (hex(bytes[i + 1]).unwrap_or(0) << 4) | hex(bytes[i + 2]).unwrap_or(0);
            if unreserved(d) {
                decoded.push(d);
            } else {
                decoded.extend_from_slice(&bytes[i..i + 3]);
            }
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    let trailing = decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(raw.len());
    for s in &segments {
        out.push('/');
        // Only ASCII bytes of the original and decoded unreserved ones.
        out.push_str(std::str::from_utf8(s).unwrap_or_default());
    }
    if segments.is_empty() || trailing {
        out.push('/');
    }
    let path_len = out.len();
    out.push_str(query);
    Ok(Target {
        target: Cow::Owned(out),
        path_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn norm(raw: &str) -> Result<(String, String), BadTarget> {
        normalize(raw, false).map(|t| (t.path().to_string(), t.target.to_string()))
    }

    #[test]
    fn the_query_is_not_part_of_the_path() {
        assert_eq!(norm("/api?x=1"), Ok(("/api".into(), "/api?x=1".into())));
        assert_eq!(
            norm("/api?x=/../y"),
            Ok(("/api".into(), "/api?x=/../y".into()))
        );
        assert!(!normalize("/api/v1?x=1", false).unwrap().changed());
    }

    #[test]
    fn a_fragment_is_cut_off_before_routing_and_forwarding() {
        for (raw, path, target) in [
            ("/api#/../public", "/api", "/api"),
            ("/x#/../../api/y", "/x", "/x"),
            ("/api/x#frag", "/api/x", "/api/x"),
            ("/api/x?q#/../../public", "/api/x", "/api/x?q"),
            ("/a#?b", "/a", "/a"),
            ("/a/../b#c", "/b", "/b"),
        ] {
            let t = normalize(raw, false).unwrap();
            assert_eq!((t.path(), &*t.target), (path, target), "{raw}");
            assert!(t.changed(), "{raw}: the upstream must not get the fragment");
        }
        assert_eq!(norm("#/api"), Err(BadTarget::NotAPath));
    }

    #[test]
    fn dot_segments_escapes_and_double_slashes_are_resolved() {
        for (raw, path) in [
            ("/api/../x", "/x"),
            ("/api/%2e%2e/x", "/x"),
            ("/api/.%2E/x", "/x"),
            ("/a/./b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/../../etc", "/etc"),
            ("//api//x", "/api/x"),
            ("/%61pi", "/api"),
            ("/a/..", "/"),
            ("/.", "/"),
            ("/a%20b/..c", "/a%20b/..c"),
            ("/a/.b", "/a/.b"),
        ] {
            assert_eq!(norm(raw).map(|p| p.0), Ok(path.to_string()), "{raw}");
        }
    }

    #[test]
    fn encoded_separators_nul_and_non_paths_are_refused() {
        assert_eq!(norm("/api/..%2fx"), Err(BadTarget::EncodedSeparator));
        assert_eq!(norm("/api/%5c"), Err(BadTarget::EncodedSeparator));
        assert_eq!(norm("/api\\x"), Err(BadTarget::EncodedSeparator));
        assert_eq!(norm("/a%00"), Err(BadTarget::BadEscape));
        assert_eq!(norm("/a%zz"), Err(BadTarget::BadEscape));
        assert_eq!(norm("/a%2"), Err(BadTarget::BadEscape));
        assert_eq!(norm("*"), Err(BadTarget::NotAPath));
        assert_eq!(norm("api"), Err(BadTarget::NotAPath));
        let kept = normalize("/g/a%2Fb", true).unwrap();
        assert_eq!(kept.path(), "/g/a%2Fb");
    }

    proptest! {
        /// Whatever the input, a normalised path has no dot segment, no empty
        /// segment and no escape of an unreserved byte, and normalising it
        /// again changes nothing.
        #[test]
        fn normalised_paths_are_canonical(raw in "/[a-c./%2eEfF5]{0,24}(\\?[a-z./]{0,6})?") {
            if let Ok(t) = normalize(&raw, false) {
                let path = t.path();
                prop_assert!(path.starts_with('/'));
                prop_assert!(!path.contains("//"));
                for seg in path.split('/') {
                    prop_assert!(seg != "." && seg != "..", "{}", path);
                }
                let again = normalize(&t.target, false).unwrap();
                prop_assert!(!again.changed(), "{} -> {}", raw, t.target);
            }
        }
    }
}
