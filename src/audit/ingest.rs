//! The one path every audit source feeds: parse, judge, drop repeated stages of
//! one request, report to the activity book, count outcomes.
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};

use super::event::{Event, split_event_list};
use super::rules::{Rules, Verdict};
use crate::activity::{Activity, Reporter};
use crate::model::Source;

/// How many auditIDs one generation of the dedupe memory holds; two
/// generations are kept, so memory stays under a few MB.
const DEDUPE_GENERATION: usize = 64 * 1024;

/// Outcomes of a batch, as counted in `siesta_audit_events_total`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub counted: u64,
    pub ignored: u64,
    pub invalid: u64,
}

impl Tally {
    pub fn total(&self) -> u64 {
        self.counted + self.ignored + self.invalid
    }

    pub fn add(&mut self, other: Tally) {
        self.counted += other.counted;
        self.ignored += other.ignored;
        self.invalid += other.invalid;
    }

    fn publish(&self, metrics: &crate::metrics::Metrics) {
        let m = &metrics.audit_events;
        for (result, n) in [
            ("counted", self.counted),
            ("ignored", self.ignored),
            ("invalid", self.invalid),
        ] {
            if n > 0 {
                m.with_label_values(&[result]).inc_by(n);
            }
        }
    }
}

/// The auditIDs of counted requests, in two generations: a request's later
/// stages arrive within its lifetime, so the older generation is dropped whole
/// once the newer one fills. IDs are kept as 64-bit hashes.
struct Dedupe {
    hasher: RandomState,
    current: HashSet<u64>,
    previous: HashSet<u64>,
}

impl Dedupe {
    fn new() -> Dedupe {
        Dedupe {
            hasher: RandomState::new(),
            current: HashSet::new(),
            previous: HashSet::new(),
        }
    }

    /// True when this ID is seen for the first time.
    fn first(&mut self, audit_id: &[u8]) -> bool {
        let h = self.hasher.hash_one(audit_id);
        if self.previous.contains(&h) || !self.current.insert(h) {
            return false;
        }
        if self.current.len() >= DEDUPE_GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        true
    }
}

/// The shared ingest: cheap to clone, safe to use from every source at once.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

struct Inner {
    rules: RwLock<Arc<Rules>>,
    dedupe: Mutex<Dedupe>,
    reporter: Reporter,
}

impl Ingest {
    /// What this ingest counts into: its reporter's metrics.
    pub fn metrics(&self) -> &std::sync::Arc<crate::metrics::Metrics> {
        self.inner.reporter.metrics()
    }

    pub fn new(rules: Rules, reporter: Reporter) -> Ingest {
        Ingest {
            inner: Arc::new(Inner {
                rules: RwLock::new(Arc::new(rules)),
                dedupe: Mutex::new(Dedupe::new()),
                reporter,
            }),
        }
    }

    /// Apply new rules (a reloaded admin config) to every event from now on.
    pub fn set_rules(&self, rules: Rules) {
        *self.inner.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
    }

    fn rules(&self) -> Arc<Rules> {
        self.inner
            .rules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A body of JSON lines (one Event per line); bad lines are counted invalid
    /// and skipped. A trailing line without its newline is processed too.
    pub fn lines(&self, body: &[u8]) -> Tally {
        self.lines_since(body, None)
    }

    /// Like [`Ingest::lines`], but events older than `not_before` are ignored
    /// (an audit log read again after a restart).
    pub fn lines_since(&self, body: &[u8], not_before: Option<DateTime<Utc>>) -> Tally {
        let rules = self.rules();
        let mut tally = Tally::default();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len())) {
            let line = body[start..end].trim_ascii();
            start = end + 1;
            if line.is_empty() {
                continue;
            }
            match Event::parse(line) {
                Ok(event) => self.event(&rules, &event, not_before, &mut tally),
                Err(_) => tally.invalid += 1,
            }
        }
        tally.publish(self.metrics());
        tally
    }

    /// An `audit.k8s.io/v1` EventList. `Err` when the body is not one (400);
    /// otherwise each item counts on its own merits.
    pub fn event_list(&self, body: &[u8]) -> Result<Tally, serde_json::Error> {
        let items = split_event_list(body)?;
        Ok(self.event_list_items(body, &items))
    }

    /// The items of an EventList already split by [`split_event_list`].
    pub fn event_list_items(&self, body: &[u8], items: &[std::ops::Range<usize>]) -> Tally {
        let rules = self.rules();
        let mut tally = Tally::default();
        for range in items {
            match body.get(range.clone()).map(Event::parse) {
                Some(Ok(event)) => self.event(&rules, &event, None, &mut tally),
                _ => tally.invalid += 1,
            }
        }
        tally.publish(self.metrics());
        tally
    }

    fn event(
        &self,
        rules: &Rules,
        event: &Event<'_>,
        not_before: Option<DateTime<Utc>>,
        tally: &mut Tally,
    ) {
        let namespace = match rules.judge(event) {
            Verdict::Count { namespace } => namespace,
            Verdict::Ignore(_) => {
                tally.ignored += 1;
                return;
            }
        };
        let Some(at) = event.timestamp() else {
            tally.invalid += 1;
            return;
        };
        if not_before.is_some_and(|t| at < t) {
            tally.ignored += 1;
            return;
        }
        let first = self
            .inner
            .dedupe
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first(&event.audit_id.0);
        if !first {
            tally.ignored += 1;
            return;
        }
        tally.counted += 1;
        self.inner.reporter.report(Activity {
            namespace: namespace.to_string(),
            at,
            source: Source::Api,
            detail: detail(event),
        });
    }
}

/// `alice get pods/log`: who did what to which kind, kept short.
fn detail(event: &Event<'_>) -> String {
    let user = event.effective_user().username.as_str();
    let object = event.object_ref.as_ref();
    let resource = object
        .and_then(|o| o.resource.as_ref())
        .map_or("", |r| r.as_str());
    let mut s = format!(
        "{} {} {}",
        truncate(user, 64),
        truncate(event.verb.as_str(), 16),
        truncate(resource, 48)
    );
    if let Some(sub) = object.and_then(|o| o.subresource.as_ref()) {
        s.push('/');
        s.push_str(truncate(sub.as_str(), 16));
    }
    s
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::activity::AllAwake;

    pub(crate) fn line(id: &str, user: &str, verb: &str, namespace: &str, stamp: &str) -> String {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/{namespace}/pods","verb":"{verb}","user":{{"username":"{user}","groups":["system:authenticated"]}},"userAgent":"kubectl/v1.36.3","objectRef":{{"resource":"pods","namespace":"{namespace}","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{stamp}","stageTimestamp":"{stamp}"}}"#
        )
    }

    pub(crate) fn ingest() -> (Ingest, Reporter) {
        let reporter = Reporter::new(Arc::new(AllAwake), None, None, Arc::default());
        (Ingest::new(Rules::default(), reporter.clone()), reporter)
    }

    #[test]
    fn a_counted_line_reaches_the_reporter_with_its_own_time() {
        let (ingest, reporter) = ingest();
        let body = line("1", "alice", "get", "audit-a", "2026-01-02T03:04:05.5Z") + "\n";
        assert_eq!(
            ingest.lines(body.as_bytes()),
            Tally {
                counted: 1,
                ignored: 0,
                invalid: 0
            }
        );
        let seen = reporter.seen("audit-a").unwrap();
        assert_eq!(
            seen.api.unwrap().to_rfc3339(),
            "2026-01-02T03:04:05.500+00:00"
        );
        assert_eq!(seen.detail.as_deref(), Some("api alice get pods"));
    }

    #[test]
    fn one_request_counts_once_however_many_stages() {
        let (ingest, reporter) = ingest();
        let started = line("r1", "alice", "get", "audit-a", "2026-01-02T03:04:05Z")
            .replace("ResponseComplete", "ResponseStarted");
        let complete = line("r1", "alice", "get", "audit-a", "2026-01-02T03:04:06Z");
        let body = format!("{started}\n{complete}\n");
        assert_eq!(ingest.lines(body.as_bytes()), tally(1, 1, 0));
        assert!(reporter.seen("audit-a").is_some());
    }

    const AT: &str = "2026-01-02T03:04:05Z";

    /// The `RequestReceived` stage of request `id`: before authorization, no response.
    fn received(id: &str, namespace: &str) -> String {
        line(id, "mallory", "get", namespace, AT)
            .replace(r#""ResponseComplete""#, r#""RequestReceived""#)
            .replace(r#""responseStatus":{"metadata":{},"code":200},"#, "")
    }

    /// The `ResponseComplete` stage of request `id`, answered with `code`.
    fn answered(id: &str, namespace: &str, code: u16) -> String {
        line(id, "mallory", "get", namespace, AT)
            .replace(r#""code":200"#, &format!(r#""code":{code}"#))
    }

    fn tally(counted: u64, ignored: u64, invalid: u64) -> Tally {
        Tally {
            counted,
            ignored,
            invalid,
        }
    }

    #[test]
    fn request_received_then_a_403_counts_nothing() {
        let (ingest, reporter) = ingest();
        assert_eq!(
            ingest.lines(received("d1", "refused-a").as_bytes()),
            tally(0, 1, 0)
        );
        assert_eq!(
            ingest.lines(answered("d1", "refused-a", 403).as_bytes()),
            tally(0, 1, 0)
        );
        assert_eq!(reporter.seen("refused-a"), None);
    }

    #[test]
    fn a_403_then_its_request_received_counts_nothing() {
        let (ingest, reporter) = ingest();
        assert_eq!(
            ingest.lines(answered("d2", "refused-b", 403).as_bytes()),
            tally(0, 1, 0)
        );
        assert_eq!(
            ingest.lines(received("d2", "refused-b").as_bytes()),
            tally(0, 1, 0)
        );
        assert_eq!(reporter.seen("refused-b"), None);
    }

    #[test]
    fn request_received_then_a_200_counts_once() {
        let (ingest, reporter) = ingest();
        let body = format!(
            "{}\n{}\n{}\n",
            received("a1", "allowed-a"),
            answered("a1", "allowed-a", 200),
            answered("a1", "allowed-a", 200)
        );
        assert_eq!(ingest.lines(body.as_bytes()), tally(1, 2, 0));
        assert!(reporter.seen("allowed-a").is_some());
    }

    #[test]
    fn bad_lines_are_invalid_and_the_rest_still_count() {
        let (ingest, reporter) = ingest();
        let good = line("1", "alice", "get", "audit-b", "2026-01-02T03:04:05Z");
        let no_time = line("2", "alice", "get", "audit-b", "yesterday");
        let body = format!("{{not json\n\n{good}\n{{\"kind\":\"Event\"}}\n{no_time}\n[1,2]");
        assert_eq!(
            ingest.lines(body.as_bytes()),
            Tally {
                counted: 1,
                ignored: 0,
                invalid: 4
            }
        );
        assert!(reporter.seen("audit-b").is_some());
    }

    #[test]
    fn an_event_list_with_a_malformed_item_counts_its_good_items() {
        let (ingest, reporter) = ingest();
        let a = line("1", "alice", "get", "audit-c", "2026-01-02T03:04:05Z");
        let b = line("2", "bob", "delete", "audit-d", "2026-01-02T03:04:05Z");
        let body = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{a},{{"auditID":7}},{b}]}}"#
        );
        assert_eq!(
            ingest.event_list(body.as_bytes()).unwrap(),
            Tally {
                counted: 2,
                ignored: 0,
                invalid: 1
            }
        );
        assert!(reporter.seen("audit-c").is_some() && reporter.seen("audit-d").is_some());
        assert!(ingest.event_list(b"{\"items\":[{}").is_err());
    }

    #[test]
    fn dedupe_memory_is_bounded_and_recent_ids_are_remembered() {
        let mut d = Dedupe::new();
        for i in 0..3 * DEDUPE_GENERATION {
            assert!(d.first(i.to_string().as_bytes()));
        }
        assert!(d.current.len() + d.previous.len() <= 2 * DEDUPE_GENERATION);
        assert!(!d.first((3 * DEDUPE_GENERATION - 1).to_string().as_bytes()));
    }

    #[test]
    fn details_are_short() {
        let long = "u".repeat(500);
        let body = line("1", &long, "get", "audit-e", "2026-01-02T03:04:05Z");
        let event = Event::parse(body.as_bytes()).unwrap();
        assert!(detail(&event).len() < 140);
    }

    proptest::proptest! {
        #[test]
        fn any_body_is_tallied_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1024)) {
            let (ingest, _) = ingest();
            let t = ingest.lines(&bytes);
            let lines = bytes.split(|&b| b == b'\n').filter(|l| !l.trim_ascii().is_empty()).count() as u64;
            proptest::prop_assert_eq!(t.total(), lines);
            let _ = ingest.event_list(&bytes);
        }
    }
}
