//! The audit trail: one JSON record per reference a connector resolves,
//! invalidates or is refused. Records name secrets, never values: this is
//! the per-plugin trail that CloudTrail cannot give when the host makes every
//! call.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cache::CacheStatus;

/// What was decided for one reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "decision", content = "detail")]
pub enum Decision {
    /// Served; the detail is the allow rule.
    Allowed(String),
    /// Refused by policy (or by the backend); the detail says by what.
    Denied(String),
    /// Allowed, but no such secret or version.
    NotFound,
    /// The reference is malformed; the detail says how.
    Invalid(String),
    /// A path into a value that is not a JSON object.
    NotJson,
    /// A key of the path is missing; the detail names it.
    MissingKey(String),
    /// The backend failed; the detail says how.
    Unavailable(String),
    /// The connector asked for the cached copy to be dropped.
    Invalidated,
    /// An invalidation refused by the rate limit.
    RateLimited,
    /// The connector was given the plaintext of sealed text holding this
    /// secret; the detail is the reveal rule.
    Revealed(String),
    /// The render made more records than are written one by one; the
    /// detail counts the rest by decision.
    Summarised(String),
    /// The render was refused because an output would take secret
    /// material where the operator did not send it; the detail names the
    /// output, the part and the pins, never a value.
    EgressRefused(String),
}

impl Decision {
    /// The decision's name as it appears in a record.
    pub fn kind(&self) -> &'static str {
        DECISION_KINDS[self.index()]
    }

    /// Its place in [`DECISION_KINDS`].
    fn index(&self) -> usize {
        match self {
            Decision::Allowed(_) => 0,
            Decision::Denied(_) => 1,
            Decision::NotFound => 2,
            Decision::Invalid(_) => 3,
            Decision::NotJson => 4,
            Decision::MissingKey(_) => 5,
            Decision::Unavailable(_) => 6,
            Decision::Invalidated => 7,
            Decision::RateLimited => 8,
            Decision::Revealed(_) => 9,
            Decision::Summarised(_) => 10,
            Decision::EgressRefused(_) => 11,
        }
    }

    /// The decision's detail, for the variants that carry one.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Decision::Allowed(d)
            | Decision::Denied(d)
            | Decision::Invalid(d)
            | Decision::MissingKey(d)
            | Decision::Unavailable(d)
            | Decision::Revealed(d)
            | Decision::Summarised(d)
            | Decision::EgressRefused(d) => Some(d),
            Decision::NotFound
            | Decision::NotJson
            | Decision::Invalidated
            | Decision::RateLimited => None,
        }
    }

    /// A refusal: what a hostile connector can produce at will, so only a
    /// few per render are written one by one.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Decision::Denied(_) | Decision::Invalid(_) | Decision::RateLimited
        )
    }
}

/// Every decision's name, by [`Decision::index`].
const DECISION_KINDS: [&str; 12] = [
    "allowed",
    "denied",
    "not_found",
    "invalid",
    "not_json",
    "missing_key",
    "unavailable",
    "invalidated",
    "rate_limited",
    "revealed",
    "summarised",
    "egress_refused",
];

/// One audit record.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    /// RFC 3339, UTC, milliseconds (filled in when the record is written).
    pub time: String,
    /// The tenant id (a configured one: `default` for the top-level tables).
    pub tenant: String,
    /// When the record was made.
    #[serde(skip)]
    pub at: SystemTime,
    /// The connector id.
    pub connector: String,
    /// The reference as the connector wrote it (bounded, escaped).
    pub reference: String,
    /// The canonical secret name, once known.
    pub canonical: Option<String>,
    /// JSON keys read.
    pub path: Vec<String>,
    /// The stage or version id asked for.
    pub version: Option<String>,
    /// The version id served.
    pub version_id: Option<String>,
    /// What was decided.
    #[serde(flatten)]
    pub decision: Decision,
    /// How the cache served it.
    pub cache: Option<CacheStatus>,
    /// Time spent resolving the render's references, in microseconds.
    pub latency_us: Option<u64>,
}

impl AuditRecord {
    /// A record stamped now.
    pub fn new(tenant: &str, connector: &str, reference: String, decision: Decision) -> Self {
        Self {
            at: SystemTime::now(),
            tenant: tenant.to_string(),
            connector: connector.to_string(),
            reference,
            ..Self::unwritten(decision)
        }
    }

    /// A record for a log that writes nothing: no clock read, no strings.
    pub fn unwritten(decision: Decision) -> Self {
        Self {
            time: String::new(),
            tenant: String::new(),
            at: SystemTime::UNIX_EPOCH,
            connector: String::new(),
            reference: String::new(),
            canonical: None,
            path: Vec::new(),
            version: None,
            version_id: None,
            decision,
            cache: None,
            latency_us: None,
        }
    }
}

/// Where records go: `tracing` (target `keyward::audit`, level info) and/or
/// a JSON-lines file.
#[derive(Debug)]
pub struct AuditLog {
    to_tracing: bool,
    file: Option<(PathBuf, Mutex<File>)>,
    /// Every decision taken, by kind, written or not (for metrics): one
    /// counter per kind, so counting takes no lock.
    decisions: [AtomicU64; DECISION_KINDS.len()],
}

impl Default for AuditLog {
    fn default() -> Self {
        Self {
            to_tracing: true,
            file: None,
            decisions: Default::default(),
        }
    }
}

impl AuditLog {
    /// Opens (appending to) the file, if any.
    pub fn open(file: Option<&Path>, to_tracing: bool) -> std::io::Result<Self> {
        let file = match file {
            Some(path) => {
                let f = OpenOptions::new().create(true).append(true).open(path)?;
                Some((path.to_path_buf(), Mutex::new(f)))
            }
            None => None,
        };
        Ok(Self {
            to_tracing,
            file,
            decisions: Default::default(),
        })
    }

    /// Whether records go anywhere now (so that a host with no sink pays
    /// nothing for them).
    pub fn is_active(&self) -> bool {
        self.file.is_some()
            || (self.to_tracing
                && tracing::enabled!(target: "keyward::audit", tracing::Level::INFO))
    }

    /// Counts a decision (whether or not its record is written).
    pub fn count(&self, decision: &Decision) {
        self.decisions[decision.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Decisions taken so far, by kind (`allowed`, `denied`, ...), in the
    /// kinds' alphabetical order; kinds never taken are left out.
    pub fn decisions(&self) -> Vec<(&'static str, u64)> {
        let mut taken: Vec<(&'static str, u64)> = DECISION_KINDS
            .iter()
            .zip(&self.decisions)
            .map(|(kind, n)| (*kind, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect();
        taken.sort_unstable();
        taken
    }

    /// Writes one record. A failure to write is logged, never fatal and
    /// never silent.
    pub fn write(&self, record: &AuditRecord) {
        self.write_all(std::slice::from_ref(record));
    }

    /// Writes records (a render's reads) as lines of one write: an
    /// append-mode write is placed whole, so lines from several hosts never
    /// interleave, and a render costs one system call, not one per read.
    pub fn write_all(&self, records: &[AuditRecord]) {
        if records.is_empty() || !self.is_active() {
            return;
        }
        let mut lines = Vec::with_capacity(256 * records.len());
        let mut stamp = Stamp::default();
        for record in records {
            let line = Line {
                time: stamp.of(record.at),
                record,
            };
            let start = lines.len();
            if let Err(e) = serde_json::to_writer(&mut lines, &line) {
                lines.truncate(start);
                tracing::error!(target: "keyward::audit", "cannot serialize an audit record: {e}");
                continue;
            }
            if self.to_tracing {
                // serde_json writes UTF-8.
                let json = std::str::from_utf8(&lines[start..]).unwrap_or_default();
                tracing::info!(target: "keyward::audit", "{json}");
            }
            lines.push(b'\n');
        }
        if let Some((path, file)) = &self.file
            && !lines.is_empty()
        {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = file.write_all(&lines) {
                tracing::error!(target: "keyward::audit", "cannot write the audit log {}: {e}", path.display());
            }
        }
    }
}

/// A record as its JSON line: the time written out, the decision and its
/// detail inline (as `AuditRecord`'s derived form, which `flatten` makes
/// slow: it buffers the decision), borrowed, not cloned.
struct Line<'a> {
    time: &'a str,
    record: &'a AuditRecord,
}

impl Serialize for Line<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let r = self.record;
        let detail = r.decision.detail();
        let mut map = serializer.serialize_map(Some(12 + usize::from(detail.is_some())))?;
        map.serialize_entry("time", self.time)?;
        map.serialize_entry("tenant", &r.tenant)?;
        map.serialize_entry("connector", &r.connector)?;
        map.serialize_entry("reference", &r.reference)?;
        map.serialize_entry("canonical", &r.canonical)?;
        map.serialize_entry("path", &r.path)?;
        map.serialize_entry("version", &r.version)?;
        map.serialize_entry("version_id", &r.version_id)?;
        map.serialize_entry("decision", r.decision.kind())?;
        if let Some(detail) = detail {
            map.serialize_entry("detail", detail)?;
        }
        map.serialize_entry("cache", &r.cache)?;
        map.serialize_entry("latency_us", &r.latency_us)?;
        map.end()
    }
}

/// The RFC 3339 time of the last record stamped: a render's records share
/// their millisecond, so the time is formatted once per render.
#[derive(Default)]
struct Stamp {
    millis: Option<u128>,
    text: String,
}

impl Stamp {
    fn of(&mut self, at: SystemTime) -> &str {
        let millis = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        if self.millis != Some(millis) {
            self.millis = Some(millis);
            self.text = rfc3339(at);
        }
        &self.text
    }
}

/// The last `n` lines of an audit file.
pub fn tail(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)?;
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect())
}

/// `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_records_derived_form() {
        for decision in [
            Decision::Allowed("rule **".into()),
            Decision::NotFound,
            Decision::Summarised("denied=3".into()),
        ] {
            let mut record = AuditRecord::new("acme", "pg", "{{ secrets.db }}".into(), decision);
            record.canonical = Some("app/db".into());
            record.path = vec!["password".into()];
            record.cache = Some(CacheStatus::Hit);
            record.latency_us = Some(7);
            let mut stamp = Stamp::default();
            let line = serde_json::to_string(&Line {
                time: stamp.of(record.at),
                record: &record,
            })
            .unwrap();
            record.time = rfc3339(record.at);
            assert_eq!(line, serde_json::to_string(&record).unwrap());
        }
    }

    #[test]
    fn each_decision_is_counted_under_its_own_name() {
        let log = AuditLog::default();
        let all = [
            Decision::Allowed(String::new()),
            Decision::Denied(String::new()),
            Decision::NotFound,
            Decision::Invalid(String::new()),
            Decision::NotJson,
            Decision::MissingKey(String::new()),
            Decision::Unavailable(String::new()),
            Decision::Invalidated,
            Decision::RateLimited,
            Decision::Revealed(String::new()),
            Decision::Summarised(String::new()),
            Decision::EgressRefused(String::new()),
        ];
        for (n, decision) in all.iter().enumerate() {
            let tag = serde_json::to_value(decision).unwrap()["decision"].clone();
            assert_eq!(tag, decision.kind(), "{decision:?}");
            for _ in 0..=n {
                log.count(decision);
            }
        }
        let counted = log.decisions();
        assert_eq!(counted.len(), all.len());
        assert!(counted.is_sorted());
        for (n, decision) in all.iter().enumerate() {
            assert!(counted.contains(&(decision.kind(), n as u64 + 1)));
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
        assert_eq!(
            rfc3339(SystemTime::now()).len(),
            "2026-11-23T02:50:00.000Z".len()
        );
    }

    #[test]
    fn file_records_are_json_lines_and_tail_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(Some(&path), false).unwrap();
        for i in 0..3 {
            log.write(&AuditRecord::new(
                "default",
                "c",
                format!("ref{i}"),
                Decision::NotFound,
            ));
        }
        let last = tail(&path, 2).unwrap();
        assert_eq!(last.len(), 2);
        let record: serde_json::Value = serde_json::from_str(&last[1]).unwrap();
        assert_eq!(record["reference"], "ref2");
        assert_eq!(record["decision"], "not_found");
    }
}
