//! Render plans: a connector's answer for one configuration, kept so that
//! every later render of it is host work only.
//!
//! A connector cannot read sealed text, so what it returns depends only on
//! what it saw: the field names, each field's plain pieces, and how many
//! sealed pieces stand where. That is a plan's key. A render recorded on a
//! fresh instance with deterministic WASI that called no import with an
//! effect or an answer from outside (`reveal`, `list`, `invalidate`) is a
//! pure function of its key, so its outputs' compositions (sealed pieces by
//! handle, numbered by position), its log lines, or its render error can be
//! evaluated again with the next render's values, without the guest.
//!
//! Plans are kept per loaded connector (so a reload that changes the
//! component or the connector's limits drops them), at most
//! `sandbox.render_plans` of them, the least recently used dropped first.

use std::collections::HashMap;
use std::hash::{BuildHasher, DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::interface::bindings::keyward::connector::types as wit_types;
use super::verdicts::KeptVerdicts;
use crate::contract::RenderError;
use crate::render::ComposedOutput;

/// What a recorded render did.
#[derive(Debug)]
pub(crate) enum Recorded {
    /// Its outputs, as composed.
    Outputs(Vec<ComposedOutput>),
    /// The render error it returned (already escaped: nothing was revealed,
    /// so there was nothing to mask).
    Failed(RenderError),
}

/// A recorded render.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) recorded: Recorded,
    /// The log lines it wrote (escaped), written again on every replay.
    pub(crate) logs: Vec<(tracing::Level, String)>,
    /// The egress verdicts of its last replay.
    pub(crate) verdicts: KeptVerdicts,
    /// When it was last used, on its plans' clock (see [`Plans::touch`]).
    used: AtomicU64,
}

impl Plan {
    pub(crate) fn new(recorded: Recorded, logs: Vec<(tracing::Level, String)>) -> Self {
        Self {
            recorded,
            logs,
            verdicts: KeptVerdicts::default(),
            used: AtomicU64::new(0),
        }
    }
}

/// What is known of a key.
#[derive(Clone, Debug)]
pub(crate) enum Known {
    /// Its plan.
    Plan(Arc<Plan>),
    /// Its render called an import with an effect (reveal, list,
    /// invalidate): it runs as it always did, never recorded again.
    RunsEveryTime,
}

/// A plan's key: the fields as the connector saw them, sealed pieces by
/// place only.
#[derive(Debug)]
struct Key {
    fields: Vec<(String, Vec<Piece>)>,
}

#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Plain(String),
    Sealed,
}

impl Key {
    fn of(fields: &[wit_types::Field]) -> Self {
        Self {
            fields: fields
                .iter()
                .map(|field| {
                    let pieces = field
                        .value
                        .iter()
                        .map(|piece| match piece {
                            wit_types::Text::Plain(text) => Piece::Plain(text.clone()),
                            wit_types::Text::Sealed(_) => Piece::Sealed,
                        })
                        .collect();
                    (field.name.clone(), pieces)
                })
                .collect(),
        }
    }

    /// Whether `fields` have this key (compared in place: nothing copied).
    fn matches(&self, fields: &[wit_types::Field]) -> bool {
        self.fields.len() == fields.len()
            && self
                .fields
                .iter()
                .zip(fields)
                .all(|((name, pieces), field)| {
                    *name == field.name
                        && pieces.len() == field.value.len()
                        && pieces.iter().zip(&field.value).all(|pair| match pair {
                            (Piece::Plain(a), wit_types::Text::Plain(b)) => a == b,
                            (Piece::Sealed, wit_types::Text::Sealed(_)) => true,
                            _ => false,
                        })
                })
    }
}

/// Feeds the key of `fields` to `hasher`: what [`Key::matches`] compares.
fn hash_key(fields: &[wit_types::Field], hasher: &mut impl Hasher) {
    hasher.write_usize(fields.len());
    for field in fields {
        field.name.hash(hasher);
        hasher.write_usize(field.value.len());
        for piece in &field.value {
            match piece {
                wit_types::Text::Plain(text) => {
                    hasher.write_u8(0);
                    text.hash(hasher);
                }
                wit_types::Text::Sealed(_) => hasher.write_u8(1),
            }
        }
    }
}

/// The seed of a recording render's random streams: a fixed function of
/// its key, the same in every process.
pub(crate) fn seed_of(fields: &[wit_types::Field]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hash_key(fields, &mut hasher);
    hasher.finish()
}

struct Entry {
    key: Key,
    known: Known,
    used: u64,
}

/// A connector's plans by key, bounded, least recently used dropped first.
pub(crate) struct Plans {
    capacity: usize,
    /// Keyed (seeded per process): a key holds text a platform's caller
    /// may have chosen.
    hasher: foldhash::fast::RandomState,
    /// Counts uses: an entry's last use orders the LRU.
    clock: AtomicU64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Entries by their key's hash (a bucket holds the rare collisions).
    by_hash: HashMap<u64, Vec<Entry>, NoRehash>,
    len: usize,
}

impl Entry {
    /// When it was last used: looked up here, or its plan used from
    /// elsewhere ([`Plans::touch`]).
    fn last_used(&self) -> u64 {
        match &self.known {
            Known::Plan(plan) => self.used.max(plan.used.load(Ordering::Relaxed)),
            Known::RunsEveryTime => self.used,
        }
    }
}

/// The map's keys are already hashes.
#[derive(Clone, Copy, Default)]
struct NoRehash;

impl BuildHasher for NoRehash {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl std::fmt::Debug for Plans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plans")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl Plans {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hasher: foldhash::fast::RandomState::default(),
            clock: AtomicU64::new(0),
            inner: Mutex::default(),
        }
    }

    /// Whether plans are kept at all (`sandbox.render_plans` is not 0).
    pub(crate) fn enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The hash `fields` are looked up and kept by.
    pub(crate) fn hash(&self, fields: &[wit_types::Field]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hash_key(fields, &mut hasher);
        hasher.finish()
    }

    /// What is known of the key of `fields` (hashed as `hash`).
    pub(crate) fn get(&self, hash: u64, fields: &[wit_types::Field]) -> Option<Known> {
        let now = self.tick();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = inner
            .by_hash
            .get_mut(&hash)?
            .iter_mut()
            .find(|entry| entry.key.matches(fields))?;
        entry.used = now;
        Some(entry.known.clone())
    }

    /// Keeps what is now known of the key of `fields`, dropping the least
    /// recently used entry if there is no room.
    pub(crate) fn insert(&self, hash: u64, fields: &[wit_types::Field], known: Known) {
        if !self.enabled() {
            return;
        }
        let key = Key::of(fields);
        let used = self.tick();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = inner
            .by_hash
            .get_mut(&hash)
            .and_then(|bucket| bucket.iter_mut().find(|entry| entry.key.matches(fields)))
        {
            entry.known = known;
            entry.used = used;
            return;
        }
        if inner.len >= self.capacity {
            inner.evict_least_recent(self.capacity.div_ceil(EVICTED_PER_SCAN_DIVISOR));
        }
        inner
            .by_hash
            .entry(hash)
            .or_default()
            .push(Entry { key, known, used });
        inner.len += 1;
    }

    /// Marks `plan` (one of these plans, found without a lookup) used now.
    pub(crate) fn touch(&self, plan: &Plan) {
        plan.used.store(self.tick(), Ordering::Relaxed);
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Plans and keys known to run every time, kept now.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).len
    }
}

impl Inner {
    /// Drops the `count` least recently used entries: one scan for many,
    /// so that a connector at its bound pays for a scan of its plans once
    /// per `count` new configurations, not on each.
    fn evict_least_recent(&mut self, count: usize) {
        let mut ages: Vec<u64> = self
            .by_hash
            .values()
            .flat_map(|bucket| bucket.iter().map(Entry::last_used))
            .collect();
        if ages.is_empty() {
            return;
        }
        let count = count.clamp(1, ages.len());
        // The `count` oldest uses are at most the one placed at `count - 1`.
        let cutoff = *ages.select_nth_unstable(count - 1).1;
        let mut dropped = 0;
        self.by_hash.retain(|_, bucket| {
            bucket.retain(|e| {
                let drop = dropped < count && e.last_used() <= cutoff;
                dropped += usize::from(drop);
                !drop
            });
            !bucket.is_empty()
        });
        self.len -= dropped;
    }
}

/// At its bound, a connector's plans drop this fraction of themselves
/// (the least recently used) at once.
const EVICTED_PER_SCAN_DIVISOR: usize = 8;

/// Renders by how plans served them, over every connector of a sandbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanCounts {
    /// Served by a plan: the connector did not run.
    pub hit: u64,
    /// Ran the connector and recorded its plan.
    pub recorded: u64,
    /// Ran the connector without recording: it opted out, its render
    /// revealed, listed, invalidated or trapped, or plans are off.
    pub skipped: u64,
}

#[derive(Debug, Default)]
pub(crate) struct PlanCounters {
    hit: AtomicU64,
    recorded: AtomicU64,
    skipped: AtomicU64,
}

impl PlanCounters {
    pub(crate) fn hit(&self) {
        self.hit.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn recorded(&self) {
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn skipped(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn snapshot(&self) -> PlanCounts {
        PlanCounts {
            hit: self.hit.load(Ordering::Relaxed),
            recorded: self.recorded.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(plain: &str, handle: u64) -> Vec<wit_types::Field> {
        vec![wit_types::Field {
            name: "dsn".into(),
            value: vec![
                wit_types::Text::Plain(plain.into()),
                wit_types::Text::Sealed(handle),
            ],
        }]
    }

    fn plan() -> Known {
        Known::Plan(Arc::new(Plan::new(
            Recorded::Outputs(Vec::new()),
            Vec::new(),
        )))
    }

    #[test]
    fn a_key_is_the_plain_text_and_the_places_of_sealed_pieces() {
        let plans = Plans::new(4);
        let a = fields("postgres://", 1 << 32);
        plans.insert(plans.hash(&a), &a, plan());
        // Another handle number in the same place: the same key.
        let same = fields("postgres://", 7);
        assert!(plans.get(plans.hash(&same), &same).is_some());
        // Other plain text: another key.
        let other = fields("mysql://", 1 << 32);
        assert!(plans.get(plans.hash(&other), &other).is_none());
        // A sealed piece where plain text was: another key, even if the
        // hash collided.
        let moved = vec![wit_types::Field {
            name: "dsn".into(),
            value: vec![
                wit_types::Text::Sealed(1),
                wit_types::Text::Plain("postgres://".into()),
            ],
        }];
        assert!(plans.get(plans.hash(&a), &moved).is_none());
        assert_eq!(seed_of(&a), seed_of(&same));
        assert_ne!(seed_of(&a), seed_of(&other));
    }

    #[test]
    fn the_least_recently_used_plan_is_dropped_first() {
        let plans = Plans::new(2);
        let key = |n: u32| fields(&format!("host{n}"), 0);
        for n in 0..2 {
            plans.insert(plans.hash(&key(n)), &key(n), plan());
        }
        // 0 is used, so 1 is the least recent when 2 comes.
        assert!(plans.get(plans.hash(&key(0)), &key(0)).is_some());
        plans.insert(plans.hash(&key(2)), &key(2), plan());
        assert_eq!(plans.len(), 2);
        assert!(plans.get(plans.hash(&key(1)), &key(1)).is_none());
        assert!(plans.get(plans.hash(&key(0)), &key(0)).is_some());
        assert!(plans.get(plans.hash(&key(2)), &key(2)).is_some());
        // A plan used without a lookup (from its prepared fields) counts
        // as used: 2 is touched, so 0 goes when 3 comes.
        let Some(Known::Plan(two)) = plans.get(plans.hash(&key(2)), &key(2)) else {
            panic!("plan 2 is kept");
        };
        assert!(plans.get(plans.hash(&key(0)), &key(0)).is_some());
        plans.touch(&two);
        plans.insert(plans.hash(&key(3)), &key(3), plan());
        assert!(plans.get(plans.hash(&key(0)), &key(0)).is_none());
        assert!(plans.get(plans.hash(&key(2)), &key(2)).is_some());
        // A full set of 16 drops its 2 least recently used at once.
        let plans = Plans::new(16);
        for n in 0..16 {
            plans.insert(plans.hash(&key(n)), &key(n), plan());
        }
        for n in 2..16 {
            assert!(plans.get(plans.hash(&key(n)), &key(n)).is_some());
        }
        plans.insert(plans.hash(&key(16)), &key(16), plan());
        assert_eq!(plans.len(), 15);
        for n in 0..2 {
            assert!(plans.get(plans.hash(&key(n)), &key(n)).is_none(), "{n}");
        }
        for n in 2..17 {
            assert!(plans.get(plans.hash(&key(n)), &key(n)).is_some(), "{n}");
        }
        // Off: nothing is kept.
        let off = Plans::new(0);
        off.insert(off.hash(&key(0)), &key(0), plan());
        assert_eq!(off.len(), 0);
    }
}
