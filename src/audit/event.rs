//! The audit Event as Siesta reads it: only the fields that decide whether a
//! request counts, borrowed from the input wherever the JSON allows, every
//! other field skipped. This is the hot path of the ingest: [`Event::parse`]
//! tries the hand-written [`super::scan`] first and falls back to the serde
//! parse below, which defines what an Event is.
use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// A string borrowed from the input when it has no escapes, owned otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                std::str::from_utf8(v)
                    .map(|s| Text(Cow::Borrowed(s)))
                    .map_err(E::custom)
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                std::str::from_utf8(v)
                    .map(|s| Text(Cow::Owned(s.to_owned())))
                    .map_err(E::custom)
            }
        }
        // Bytes, so serde_json leaves UTF-8 to `from_utf8` (one pass, no copy).
        d.deserialize_bytes(V)
    }
}

/// A string as raw bytes, unescaped but not checked for UTF-8: map keys (most
/// name fields Siesta skips) and long values only searched for a prefix.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Raw<'a>(pub Cow<'a, [u8]>);

type Key<'de> = Raw<'de>;

impl Raw<'_> {
    /// The text, checked for UTF-8 only now; invalid UTF-8 reads as empty.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Raw(Cow::Borrowed(v)))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Raw(Cow::Owned(v.to_vec())))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Raw(Cow::Borrowed(v.as_bytes())))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Raw(Cow::Owned(v.as_bytes().to_vec())))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A struct read from a JSON object with byte keys; unknown fields are
/// skipped, `check` rejects what is incomplete.
macro_rules! borrowed_object {
    ($name:ident, $expecting:literal, check = $check:expr, { $($key:literal => $field:ident),* $(,)? }) => {
        impl<'de: 'a, 'a> Deserialize<'de> for $name<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V<'a>(std::marker::PhantomData<&'a ()>);
                impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
                    type Value = $name<'a>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<M: de::MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<Key<'de>>()? {
                            match &*key.0 {
                                $($key => out.$field = map.next_value()?,)*
                                _ => {
                                    map.next_value::<de::IgnoredAny>()?;
                                }
                            }
                        }
                        let check: fn(&$name<'a>) -> Result<(), &'static str> = $check;
                        check(&out).map_err(de::Error::custom)?;
                        Ok(out)
                    }
                }
                d.deserialize_map(V(std::marker::PhantomData))
            }
        }
    };
}

/// One `audit.k8s.io/v1` Event, reduced to what decides whether it counts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Event<'a> {
    pub audit_id: Raw<'a>,
    /// `RequestReceived`, `ResponseStarted`, `ResponseComplete` or `Panic`.
    pub stage: Option<Raw<'a>>,
    pub request_uri: Option<Raw<'a>>,
    pub verb: Text<'a>,
    pub user: UserInfo<'a>,
    pub impersonated_user: Option<UserInfo<'a>>,
    pub user_agent: Option<Raw<'a>>,
    pub object_ref: Option<ObjectRef<'a>>,
    pub response_status: Option<ResponseStatus>,
    pub request_received_timestamp: Option<Raw<'a>>,
    pub stage_timestamp: Option<Raw<'a>>,
}

borrowed_object!(Event, "an audit Event", check = Event::check, {
    b"auditID" => audit_id,
    b"stage" => stage,
    b"requestURI" => request_uri,
    b"verb" => verb,
    b"user" => user,
    b"impersonatedUser" => impersonated_user,
    b"userAgent" => user_agent,
    b"objectRef" => object_ref,
    b"responseStatus" => response_status,
    b"requestReceivedTimestamp" => request_received_timestamp,
    b"stageTimestamp" => stage_timestamp,
});

#[derive(Debug, Default, PartialEq, Eq)]
pub struct UserInfo<'a> {
    pub username: Text<'a>,
    /// Kept as raw JSON and read only when a rule needs it.
    pub groups: Option<RawJson<'a>>,
}

/// A JSON value kept as its text, to be read later if at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawJson<'a>(pub &'a str);

impl<'de: 'a, 'a> Deserialize<'de> for RawJson<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'a serde_json::value::RawValue>::deserialize(d).map(|raw| RawJson(raw.get()))
    }
}

borrowed_object!(UserInfo, "an audit user", check = |_| Ok(()), {
    b"username" => username,
    b"groups" => groups,
});

impl<'a> UserInfo<'a> {
    /// The user's groups; malformed groups read as none.
    pub fn groups(&self) -> Vec<Text<'a>> {
        self.groups
            .and_then(|raw| {
                serde_json::from_str::<Option<Vec<Text<'a>>>>(raw.0)
                    .ok()
                    .flatten()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct ObjectRef<'a> {
    pub resource: Option<Text<'a>>,
    pub namespace: Option<Text<'a>>,
    pub name: Option<Raw<'a>>,
    pub api_group: Option<Raw<'a>>,
    pub subresource: Option<Raw<'a>>,
}

borrowed_object!(ObjectRef, "an audit objectRef", check = |_| Ok(()), {
    b"resource" => resource,
    b"namespace" => namespace,
    b"name" => name,
    b"apiGroup" => api_group,
    b"subresource" => subresource,
});

#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ResponseStatus {
    #[serde(default)]
    pub code: Option<u16>,
}

impl<'a> Event<'a> {
    /// Parse one Event from JSON: the scanner when it is sure, else serde.
    pub fn parse(json: &'a [u8]) -> Result<Event<'a>, serde_json::Error> {
        match super::scan::event(json) {
            Some(event) => Ok(event),
            None => Event::parse_serde(json),
        }
    }

    /// Parse one Event with serde only: the definition the scanner must match.
    pub fn parse_serde(json: &'a [u8]) -> Result<Event<'a>, serde_json::Error> {
        serde_json::from_slice(json)
    }

    /// What every Event needs to be one.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.audit_id.0.is_empty() {
            Err("missing auditID")
        } else if self.verb.as_str().is_empty() {
            Err("missing verb")
        } else if self.user.username.as_str().is_empty() {
            Err("missing user.username")
        } else {
            Ok(())
        }
    }

    /// Whether the API server had answered the request when it wrote this
    /// event (`ResponseStarted`, `ResponseComplete`, `Panic`). Only such a
    /// stage says whether the request was allowed: `RequestReceived` comes
    /// before authorization and carries no response code, and an event
    /// without a stage is not one the API server wrote.
    pub fn is_response(&self) -> bool {
        matches!(
            self.stage.as_ref().map(|s| &*s.0),
            Some(b"ResponseStarted" | b"ResponseComplete" | b"Panic")
        )
    }

    /// The identity the request acted as: the impersonated user, where there is one.
    pub fn effective_user(&self) -> &UserInfo<'a> {
        self.impersonated_user.as_ref().unwrap_or(&self.user)
    }

    /// The namespace the request touched: its object's namespace, or the
    /// Namespace object itself.
    pub fn namespace(&self) -> Option<&str> {
        let object = self.object_ref.as_ref()?;
        let ns = match &object.namespace {
            Some(ns) => ns.as_str(),
            None if object
                .resource
                .as_ref()
                .is_some_and(|r| r.as_str() == "namespaces")
                && object
                    .api_group
                    .as_ref()
                    .is_none_or(|g| g.as_str().is_empty()) =>
            {
                object.name.as_ref()?.as_str()
            }
            None => return None,
        };
        (!ns.is_empty()).then_some(ns)
    }

    /// When the request happened: the stage's timestamp, else when it was received.
    pub fn timestamp(&self) -> Option<DateTime<Utc>> {
        let raw = self
            .stage_timestamp
            .as_ref()
            .or(self.request_received_timestamp.as_ref())?;
        let raw = std::str::from_utf8(&raw.0).ok()?;
        DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// An EventList as the webhook receives it: each item kept as raw JSON so one
/// malformed item does not spoil the others.
#[derive(Deserialize)]
struct EventList<'a> {
    #[serde(borrow, default)]
    items: Option<Vec<&'a serde_json::value::RawValue>>,
}

/// Check that `body` is a JSON EventList and return the byte range of each item.
/// The items themselves are parsed later, one at a time.
pub fn split_event_list(body: &[u8]) -> Result<Vec<std::ops::Range<usize>>, serde_json::Error> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(serde::de::Error::custom("an EventList is a JSON object"));
    }
    let list: EventList = serde_json::from_slice(body)?;
    let base = body.as_ptr() as usize;
    Ok(list
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|raw| {
            let start = raw.get().as_ptr() as usize - base;
            start..start + raw.get().len()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERSON_GET: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/team-a/pods","verb":"list","user":{"username":"alice","groups":["dev","system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.36.3","objectRef":{"resource":"pods","namespace":"team-a","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-22T04:17:32.436008Z","stageTimestamp":"2026-11-22T04:17:32.437267Z","annotations":{"authorization.k8s.io/decision":"allow"}}"#;

    #[test]
    fn a_person_listing_pods_is_parsed_without_copies() {
        let e = Event::parse(PERSON_GET.as_bytes()).unwrap();
        assert_eq!(&*e.audit_id.0, b"a1");
        assert_eq!(e.verb.as_str(), "list");
        assert!(matches!(e.user.username.0, Cow::Borrowed("alice")));
        assert_eq!(e.user.groups().len(), 2);
        assert_eq!(e.namespace(), Some("team-a"));
        assert_eq!(e.response_status.as_ref().unwrap().code, Some(200));
        assert_eq!(
            e.timestamp().unwrap().to_rfc3339(),
            "2026-11-22T04:17:32.437267+00:00"
        );
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let json = PERSON_GET.replace(r#""username":"alice""#, r#""username":"al\u0069ce""#);
        let e = Event::parse(json.as_bytes()).unwrap();
        assert_eq!(e.user.username.as_str(), "alice");
    }

    #[test]
    fn the_namespace_object_itself_is_its_namespace() {
        let json = PERSON_GET.replace(
            r#""objectRef":{"resource":"pods","namespace":"team-a","apiVersion":"v1"}"#,
            r#""objectRef":{"resource":"namespaces","name":"team-b","apiVersion":"v1"}"#,
        );
        assert_eq!(
            Event::parse(json.as_bytes()).unwrap().namespace(),
            Some("team-b")
        );
    }

    #[test]
    fn cluster_scoped_objects_have_no_namespace() {
        let json = PERSON_GET.replace(
            r#""objectRef":{"resource":"pods","namespace":"team-a","apiVersion":"v1"}"#,
            r#""objectRef":{"resource":"nodes","name":"n1","apiVersion":"v1"}"#,
        );
        assert_eq!(Event::parse(json.as_bytes()).unwrap().namespace(), None);
    }

    #[test]
    fn impersonation_gives_the_effective_user() {
        let json = PERSON_GET.replace(
            r#""sourceIPs""#,
            r#""impersonatedUser":{"username":"system:serviceaccount:kube-system:foo"},"sourceIPs""#,
        );
        let e = Event::parse(json.as_bytes()).unwrap();
        assert_eq!(
            e.effective_user().username.as_str(),
            "system:serviceaccount:kube-system:foo"
        );
    }

    #[test]
    fn an_event_list_is_split_into_its_items() {
        let body = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{PERSON_GET}, {{"bad":1}} ]}}"#
        );
        let items = split_event_list(body.as_bytes()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(&body[items[0].clone()], PERSON_GET);
        assert_eq!(&body[items[1].clone()], r#"{"bad":1}"#);
        assert!(split_event_list(b"{\"items\":[").is_err());
        assert!(split_event_list(b"[]").is_err());
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = Event::parse(&bytes).map(|e| (e.namespace().map(str::len), e.timestamp()));
            let _ = split_event_list(&bytes);
        }

        #[test]
        fn mangled_events_never_panic(cut in 0usize..PERSON_GET.len(), byte in proptest::num::u8::ANY) {
            let mut bytes = PERSON_GET.as_bytes().to_vec();
            bytes[cut] = byte;
            let _ = Event::parse(&bytes).map(|e| (e.namespace().map(str::len), e.timestamp()));
            let _ = Event::parse(&bytes[..cut]).map(|e| e.namespace().map(str::len));
        }
    }
}
