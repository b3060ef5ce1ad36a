//! Finding a YAML path's line and column in the source text.
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_yaml_ng::Value;

use super::check::{Seg, YamlPath};

/// The line and column of the node at `path`, or of its nearest ancestor that
/// exists. serde_yaml_ng (like serde_yaml before it) attaches the position of the node being read to any error
/// raised while reading it, so the walk raises one at the target.
pub(super) fn locate(src: &str, path: &YamlPath) -> Option<(usize, usize)> {
    match Find(&path.0).deserialize(serde_yaml_ng::Deserializer::from_str(src)) {
        Err(e) => e.location().map(|l| (l.line(), l.column())),
        Ok(()) => None,
    }
}

struct Find<'p>(&'p [Seg]);

fn here<E: de::Error>() -> E {
    E::custom("located")
}

impl<'de> DeserializeSeed<'de> for Find<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Find<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Seg::Key(want), rest)) = self.0.split_first() else {
            return Err(here());
        };
        while let Some(key) = map.next_key::<Value>()? {
            if key.as_str() == Some(want.as_str()) {
                return map.next_value_seed(Find(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Err(here())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Seg::Index(want), rest)) = self.0.split_first() else {
            return Err(here());
        };
        for _ in 0..*want {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Err(here());
            }
        }
        match seq.next_element_seed(Find(rest))? {
            Some(()) => Ok(()),
            None => Err(here()),
        }
    }
}
