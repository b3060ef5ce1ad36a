//! The fast path of [`Event::parse`]: a hand-written scanner that reads the few
//! fields that decide and skips the rest, validating everything it skips.
//!
//! It answers only when it is sure serde_json would read the same [`Event`]
//! from the same bytes. Anything unusual (an escape in a key or a field read, a
//! control character in a string, a number in a form other than plain digits
//! where one is read, nesting over 64 deep, invalid JSON, an Event missing a
//! required field) gives `None`, and the serde parse decides: a valid line
//! reads the same either way, and an invalid one is refused by serde.
use std::borrow::Cow;

use super::event::{Event, ObjectRef, Raw, RawJson, ResponseStatus, Text, UserInfo};

/// Nesting deeper than this (inside a skipped value) is left to serde.
const MAX_DEPTH: u32 = 64;

/// Read `json` as one audit Event, or `None` when serde should decide.
pub fn event(json: &[u8]) -> Option<Event<'_>> {
    let mut s = Scanner { b: json, i: 0 };
    let mut e = Event::default();
    s.object(|s, key| {
        match key {
            b"auditID" => e.audit_id = s.raw()?,
            b"stage" => e.stage = s.nullable(Scanner::raw)?,
            b"requestURI" => e.request_uri = s.nullable(Scanner::raw)?,
            b"verb" => e.verb = s.text()?,
            b"user" => e.user = s.user()?,
            b"impersonatedUser" => e.impersonated_user = s.nullable(Scanner::user)?,
            b"userAgent" => e.user_agent = s.nullable(Scanner::raw)?,
            b"objectRef" => e.object_ref = s.nullable(Scanner::object_ref)?,
            b"responseStatus" => e.response_status = s.nullable(Scanner::response_status)?,
            b"requestReceivedTimestamp" => {
                e.request_received_timestamp = s.nullable(Scanner::raw)?
            }
            b"stageTimestamp" => e.stage_timestamp = s.nullable(Scanner::raw)?,
            _ => s.skip_value()?,
        }
        Some(())
    })?;
    s.ws();
    if s.i != json.len() || e.check().is_err() {
        return None;
    }
    Some(e)
}

struct Scanner<'a> {
    b: &'a [u8],
    /// The next byte to read; never past `b.len()`.
    i: usize,
}

impl<'a> Scanner<'a> {
    /// Skip JSON whitespace (what serde_json skips: no form feed).
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    /// Skip whitespace, then expect `c`.
    fn expect(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.next()? == c).then_some(())
    }

    /// After whitespace, `null` (true) or something else (false, nothing read).
    fn null(&mut self) -> bool {
        self.ws();
        let is_null = self
            .b
            .get(self.i..)
            .is_some_and(|rest| rest.starts_with(b"null"));
        if is_null {
            self.i += 4;
        }
        is_null
    }

    /// `null` as `None`, anything else read by `read`.
    fn nullable<T>(&mut self, read: fn(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null() {
            return Some(None);
        }
        read(self).map(Some)
    }

    /// An object's members, each key passed to `member` with the scanner
    /// before its value; `member` reads or skips the value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Some(());
        }
        loop {
            self.expect(b'"')?;
            let key = self.plain_str()?;
            self.expect(b':')?;
            self.ws();
            member(self, key)?;
            self.ws();
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// The rest of a string whose opening quote was read, when it has no
    /// escape and no control character; the bytes between the quotes.
    fn plain_str(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        let end = special(self.b, start);
        if self.b.get(end) != Some(&b'"') {
            return None;
        }
        self.i = end + 1;
        self.b.get(start..end)
    }

    /// Skip the rest of a string whose opening quote was read, checking
    /// escapes as serde_json does (control characters are refused).
    fn skip_str(&mut self) -> Option<()> {
        loop {
            self.i = special(self.b, self.i);
            match self.next()? {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let hex = self.b.get(self.i..self.i + 4)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit) {
                            return None;
                        }
                        self.i += 4;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// A string field read as raw bytes.
    fn raw(&mut self) -> Option<Raw<'a>> {
        self.expect(b'"')?;
        self.plain_str().map(|s| Raw(Cow::Borrowed(s)))
    }

    /// A string field read as UTF-8 text.
    fn text(&mut self) -> Option<Text<'a>> {
        self.expect(b'"')?;
        let s = std::str::from_utf8(self.plain_str()?).ok()?;
        Some(Text(Cow::Borrowed(s)))
    }

    fn user(&mut self) -> Option<UserInfo<'a>> {
        let mut user = UserInfo::default();
        self.object(|s, key| {
            match key {
                b"username" => user.username = s.text()?,
                b"groups" => user.groups = s.nullable(Scanner::raw_json)?,
                _ => s.skip_value()?,
            }
            Some(())
        })?;
        Some(user)
    }

    fn object_ref(&mut self) -> Option<ObjectRef<'a>> {
        let mut o = ObjectRef::default();
        self.object(|s, key| {
            match key {
                b"resource" => o.resource = s.nullable(Scanner::text)?,
                b"namespace" => o.namespace = s.nullable(Scanner::text)?,
                b"name" => o.name = s.nullable(Scanner::raw)?,
                b"apiGroup" => o.api_group = s.nullable(Scanner::raw)?,
                b"subresource" => o.subresource = s.nullable(Scanner::raw)?,
                _ => s.skip_value()?,
            }
            Some(())
        })?;
        Some(o)
    }

    /// `{"code": 200, ...}`. Its keys must be UTF-8 and `code` appear at
    /// most once (serde's derived struct refuses otherwise).
    fn response_status(&mut self) -> Option<ResponseStatus> {
        let mut status = ResponseStatus::default();
        let mut seen_code = false;
        self.object(|s, key| {
            std::str::from_utf8(key).ok()?;
            if key == b"code" {
                if std::mem::replace(&mut seen_code, true) {
                    return None;
                }
                status.code = s.nullable(Scanner::status_code)?;
            } else {
                s.skip_value()?;
            }
            Some(())
        })?;
        Some(status)
    }

    /// Plain digits that fit a u16; anything else (sign, fraction, exponent,
    /// leading zero) is left to serde.
    fn status_code(&mut self) -> Option<u16> {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let digits = self.b.get(start..self.i)?;
        if digits.is_empty() || digits.len() > 5 || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.b.get(self.i) {
            return None;
        }
        let n = digits
            .iter()
            .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
        u16::try_from(n).ok()
    }

    /// Any JSON value, kept as its text (which must be UTF-8, as serde's
    /// `RawValue` requires).
    fn raw_json(&mut self) -> Option<RawJson<'a>> {
        self.ws();
        let start = self.i;
        self.skip_value()?;
        let text = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
        Some(RawJson(text))
    }

    /// Skip one value, checking it is valid JSON. Iterative: the kind of each
    /// open container is one bit of `stack`.
    fn skip_value(&mut self) -> Option<()> {
        let mut stack: u64 = 0;
        let mut depth: u32 = 0;
        loop {
            // A value is expected here.
            self.ws();
            let opened = match self.next()? {
                b'"' => {
                    self.skip_str()?;
                    None
                }
                b'{' => Some(true),
                b'[' => Some(false),
                b't' => self.literal(b"rue")?,
                b'f' => self.literal(b"alse")?,
                b'n' => self.literal(b"ull")?,
                b'-' => self.number()?,
                b'0'..=b'9' => {
                    self.i -= 1;
                    self.number()?
                }
                _ => return None,
            };
            if let Some(is_object) = opened {
                self.ws();
                let close = if is_object { b'}' } else { b']' };
                if self.b.get(self.i) == Some(&close) {
                    self.i += 1;
                } else {
                    if depth >= MAX_DEPTH {
                        return None;
                    }
                    stack = (stack & !(1 << depth)) | (u64::from(is_object) << depth);
                    depth += 1;
                    if is_object {
                        self.key()?;
                    }
                    continue;
                }
            }
            // A value ended: close containers until a comma or the end.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let is_object = stack >> (depth - 1) & 1 == 1;
                self.ws();
                match self.next()? {
                    b',' => {
                        if is_object {
                            self.key()?;
                        }
                        break;
                    }
                    b'}' if is_object => depth -= 1,
                    b']' if !is_object => depth -= 1,
                    _ => return None,
                }
            }
        }
    }

    /// A skipped object's key and its colon.
    fn key(&mut self) -> Option<()> {
        self.expect(b'"')?;
        self.skip_str()?;
        self.expect(b':')
    }

    /// The rest of `true`, `false` or `null`; never opens a container.
    fn literal(&mut self, rest: &[u8]) -> Option<Option<bool>> {
        let end = self.i + rest.len();
        (self.b.get(self.i..end)? == rest).then_some(())?;
        self.i = end;
        Some(None)
    }

    /// A number as JSON writes it, its sign (if any) already read; never opens
    /// a container.
    fn number(&mut self) -> Option<Option<bool>> {
        match self.next()? {
            b'0' => {
                if self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(None)
    }

    /// Skip ASCII digits; how many.
    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }
}

/// The index of the first `"`, `\` or control character at or after `i`, or
/// `b.len()`. Eight bytes at a time: the lowest flagged byte of a word is
/// always a real match (the carries that can flag a higher byte come from it).
fn special(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        let control = v.wrapping_sub(ONES * 0x20) & !v;
        let q = v ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let s = v ^ (ONES * u64::from(b'\\'));
        let backslash = s.wrapping_sub(ONES) & !s;
        let found = (control | quote | backslash) & HIGH;
        if found != 0 {
            return i + found.trailing_zeros() as usize / 8;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::audit::synthetic::Generator;

    /// The scanner's promise: when it answers, serde reads the same Event.
    fn agrees(json: &[u8]) -> Result<bool, TestCaseError> {
        match event(json) {
            Some(fast) => {
                let slow = Event::parse_serde(json);
                prop_assert!(
                    slow.is_ok(),
                    "scanner accepted what serde refuses: {:?}: {slow:?}",
                    String::from_utf8_lossy(json)
                );
                prop_assert_eq!(Some(&fast), slow.as_ref().ok());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    const BASE: &str = r#"{"kind":"Event","auditID":"a1","stage":"ResponseComplete","verb":"get","user":{"username":"alice","groups":["dev"]},"objectRef":{"resource":"pods","namespace":"team-a","name":"p"},"responseStatus":{"metadata":{},"code":200},"stageTimestamp":"2026-11-22T04:17:32.437267Z"}"#;

    fn with(field: &str, value: &str) -> String {
        BASE.replacen(r#""kind":"Event""#, &format!(r#""{field}":{value}"#), 1)
    }

    #[test]
    fn a_plain_event_is_read_by_the_scanner() {
        let e = event(BASE.as_bytes()).expect("fast path");
        assert_eq!(e, Event::parse_serde(BASE.as_bytes()).unwrap());
        assert_eq!(e.namespace(), Some("team-a"));
        assert_eq!(e.user.groups().len(), 1);
    }

    #[test]
    fn skipped_values_of_every_kind_are_validated() {
        for value in [
            r#"{"a":[1,-2.5e+3,0,0.1,true,false,null,"x\"\\\/\b\f\n\r\t\u00e9"],"b":{}}"#,
            "[]",
            "[[[]]]",
            " { } ",
            "\"\u{e9}\"",
            "-0",
            "1E9",
        ] {
            let json = with("extra", value);
            assert!(event(json.as_bytes()).is_some(), "{value}");
            assert!(agrees(json.as_bytes()).unwrap());
        }
        for value in [
            "[1,]",
            "[,]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{1:2}"#,
            "01",
            "1.",
            "1e",
            "-",
            "tru",
            "nul",
            r#""\x""#,
            r#""\u12g4""#,
            "\"a\u{1}b\"",
            "[1 2]",
            "{\"a\":1]",
            "[1}",
        ] {
            let json = with("extra", value);
            assert!(event(json.as_bytes()).is_none(), "{value}");
            assert!(Event::parse_serde(json.as_bytes()).is_err(), "{value}");
        }
    }

    #[test]
    fn what_the_scanner_is_unsure_of_is_left_to_serde() {
        for json in [
            with("userAgent", r#""kube\u0063tl""#),
            BASE.replace(r#""verb""#, r#""ver\u0062""#),
            BASE.replace(r#""code":200"#, r#""code":2e2"#),
            BASE.replace(r#""code":200"#, r#""code":-0"#),
            BASE.replace(r#""code":200"#, r#""code":200,"code":201"#),
            BASE.replace(r#""code":200"#, r#""code":70000"#),
            BASE.replace(r#""auditID":"a1""#, r#""auditID":"""#),
            BASE.replace(r#""ResponseComplete""#, r#""Response\u0043omplete""#),
            format!("{BASE} x"),
        ] {
            assert!(event(json.as_bytes()).is_none(), "{json}");
        }
        let deep = with("deep", &format!("{}{}", "[".repeat(70), "]".repeat(70)));
        assert!(event(deep.as_bytes()).is_none());
        assert!(Event::parse_serde(deep.as_bytes()).is_ok());
    }

    #[test]
    fn the_stage_is_read_the_same_both_ways() {
        for &(stage, answered) in STAGES {
            let json = BASE.replace(r#""stage":"ResponseComplete""#, stage);
            let slow = Event::parse_serde(json.as_bytes()).unwrap();
            assert_eq!(Event::parse(json.as_bytes()).unwrap(), slow, "{stage}");
            assert_eq!(slow.is_response(), answered, "{stage}");
            let fast = agrees(json.as_bytes()).unwrap();
            assert_eq!(
                fast,
                !stage.contains('\\'),
                "only an escape goes to serde: {stage}"
            );
        }
    }

    #[test]
    fn repeated_fields_keep_the_last_as_serde_does() {
        let json = with("verb", r#""list""#);
        let e = event(json.as_bytes()).expect("fast path");
        assert_eq!(e.verb.as_str(), "get");
        assert!(agrees(json.as_bytes()).unwrap());
        let json = with("objectRef", "null");
        assert!(agrees(json.as_bytes()).unwrap());
    }

    #[test]
    fn nearly_all_generated_events_take_the_fast_path() {
        let mut g = Generator::new(3);
        let fast = (0..1000)
            .filter(|_| agrees(g.line().as_bytes()).unwrap())
            .count();
        // Only the escaped user name of the mix goes to serde.
        assert!(fast > 950, "{fast} of 1000");
    }

    /// Every stage the API server writes, and forms of the field the scanner
    /// must read as serde does (escaped, null, absent, not a string).
    /// And whether each is an answered request's.
    const STAGES: &[(&str, bool)] = &[
        (r#""stage":"RequestReceived""#, false),
        (r#""stage":"ResponseStarted""#, true),
        (r#""stage":"ResponseComplete""#, true),
        (r#""stage":"Panic""#, true),
        (r#""stage":"Response\u0053tarted""#, true),
        (r#""stage":"Request\u0052eceived""#, false),
        (r#""stage":null"#, false),
        (r#""stage":"""#, false),
        (r#""stageX":"ResponseComplete""#, false),
    ];

    /// Bytes that steer a JSON parser somewhere new when put anywhere.
    const TRICKY: &[u8] = b"\"\\{}[],: \t\n0123456789-+.eEtrufalsn\x01\x1f\x7f\xc3\xa9\xff/ux";

    fn mutation() -> impl Strategy<Value = (usize, u8, u8)> {
        (any::<usize>(), 0u8..4, prop::sample::select(TRICKY))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn generated_events_read_the_same_both_ways(seed in 1u64..u64::MAX, (stage, _) in prop::sample::select(STAGES)) {
            let line = Generator::new(seed).line();
            agrees(line.as_bytes())?;
            let line = line.replacen(r#""stage":"ResponseComplete""#, stage, 1);
            agrees(line.as_bytes())?;
        }

        #[test]
        fn mutated_events_read_the_same_or_go_to_serde(
            seed in 1u64..u64::MAX,
            edits in prop::collection::vec(mutation(), 1..4),
            cut in prop::option::of(any::<usize>()),
        ) {
            let mut bytes = Generator::new(seed).line().into_bytes();
            for (at, kind, byte) in edits {
                let at = at % (bytes.len() + 1);
                match kind {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => bytes[at] = byte,
                    2 if at < bytes.len() => { bytes.remove(at); }
                    _ => bytes.insert(at, b' '),
                }
            }
            if let Some(cut) = cut {
                bytes.truncate(cut % (bytes.len() + 1));
            }
            agrees(&bytes)?;
        }

        #[test]
        fn random_bytes_read_the_same_or_go_to_serde(
            key in prop::sample::select(&["x", "stage"][..]),
            bytes in prop::collection::vec(prop::sample::select(TRICKY), 0..64),
        ) {
            let mut json = format!(r#"{{"auditID":"1","verb":"get","user":{{"username":"u"}},"{key}":"#).into_bytes();
            json.extend_from_slice(&bytes);
            json.push(b'}');
            agrees(&json)?;
        }
    }
}
