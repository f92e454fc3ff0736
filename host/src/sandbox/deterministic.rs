//! The WASI a recording render sees: clocks and random that depend on
//! nothing but the plan's seed, so the connector's answer is a function of
//! its configuration alone, whatever language runtime it carries.
//!
//! Both clocks start at a fixed instant and move forward one microsecond
//! per read (a runtime that waits for time to pass still sees it pass); the
//! random streams are SplitMix64 from the seed. Every read is counted, so
//! the host can say what a connector's runtime asked for while it recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand_core::{Infallible, TryRng};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtxBuilder};

/// 2025-01-01T00:00:00Z, the wall clock's reading at an instance's start.
const WALL_CLOCK_START: Duration = Duration::from_secs(1_735_689_600);

/// How far each clock moves per read.
const TICK_NANOS: u64 = 1_000;

/// WASI reads made by recording renders, over every connector.
#[derive(Debug, Default)]
pub(crate) struct WasiReads {
    wall_clock: AtomicU64,
    monotonic_clock: AtomicU64,
    random_bytes: AtomicU64,
}

/// A snapshot of [`WasiReads`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordedWasiReads {
    /// Reads of `wasi:clocks/wall-clock`.
    pub wall_clock: u64,
    /// Reads of `wasi:clocks/monotonic-clock`.
    pub monotonic_clock: u64,
    /// Bytes taken from `wasi:random` (secure and insecure).
    pub random_bytes: u64,
}

impl WasiReads {
    pub(crate) fn snapshot(&self) -> RecordedWasiReads {
        RecordedWasiReads {
            wall_clock: self.wall_clock.load(Ordering::Relaxed),
            monotonic_clock: self.monotonic_clock.load(Ordering::Relaxed),
            random_bytes: self.random_bytes.load(Ordering::Relaxed),
        }
    }
}

/// Makes `builder` deterministic from `seed`, counting reads into `reads`.
pub(crate) fn make_deterministic(builder: &mut WasiCtxBuilder, seed: u64, reads: Arc<WasiReads>) {
    let ticks = Arc::new(AtomicU64::new(0));
    builder
        .wall_clock(FixedWallClock {
            ticks: ticks.clone(),
            reads: reads.clone(),
        })
        .monotonic_clock(FixedMonotonicClock {
            ticks,
            reads: reads.clone(),
        })
        .secure_random(SeededRandom::new(seed, reads.clone()))
        .insecure_random(SeededRandom::new(seed ^ 0x5bd1_e995_5bd1_e995, reads))
        .insecure_random_seed(u128::from(seed) << 64 | u128::from(!seed));
}

/// The one tick counter both clocks of an instance share.
fn tick(ticks: &AtomicU64) -> u64 {
    ticks
        .fetch_add(1, Ordering::Relaxed)
        .saturating_mul(TICK_NANOS)
}

struct FixedWallClock {
    ticks: Arc<AtomicU64>,
    reads: Arc<WasiReads>,
}

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(TICK_NANOS)
    }

    fn now(&self) -> Duration {
        self.reads.wall_clock.fetch_add(1, Ordering::Relaxed);
        WALL_CLOCK_START + Duration::from_nanos(tick(&self.ticks))
    }
}

struct FixedMonotonicClock {
    ticks: Arc<AtomicU64>,
    reads: Arc<WasiReads>,
}

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        TICK_NANOS
    }

    fn now(&self) -> u64 {
        self.reads.monotonic_clock.fetch_add(1, Ordering::Relaxed);
        tick(&self.ticks)
    }
}

/// SplitMix64: small, fast, and fully determined by its seed.
struct SeededRandom {
    state: u64,
    reads: Arc<WasiReads>,
}

impl SeededRandom {
    fn new(seed: u64, reads: Arc<WasiReads>) -> Self {
        Self { state: seed, reads }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl TryRng for SeededRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        self.reads.random_bytes.fetch_add(4, Ordering::Relaxed);
        Ok((self.next() >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.reads.random_bytes.fetch_add(8, Ordering::Relaxed);
        Ok(self.next())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.reads
            .random_bytes
            .fetch_add(dst.len() as u64, Ordering::Relaxed);
        for chunk in dst.chunks_mut(8) {
            let bytes = self.next().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream_and_another_seed_another() {
        let reads = Arc::new(WasiReads::default());
        let stream = |seed| {
            let mut random = SeededRandom::new(seed, reads.clone());
            let mut bytes = [0u8; 20];
            random.try_fill_bytes(&mut bytes).unwrap();
            bytes
        };
        assert_eq!(stream(7), stream(7));
        assert_ne!(stream(7), stream(8));
        // Four streams of 20 bytes were drawn.
        assert_eq!(reads.snapshot().random_bytes, 80);
    }

    #[test]
    fn the_clocks_start_fixed_and_move_one_tick_per_read() {
        let reads = Arc::new(WasiReads::default());
        let ticks = Arc::new(AtomicU64::new(0));
        let wall = FixedWallClock {
            ticks: ticks.clone(),
            reads: reads.clone(),
        };
        let monotonic = FixedMonotonicClock {
            ticks,
            reads: reads.clone(),
        };
        assert_eq!(wall.now(), WALL_CLOCK_START);
        assert_eq!(monotonic.now(), TICK_NANOS);
        assert_eq!(
            wall.now(),
            WALL_CLOCK_START + Duration::from_nanos(2 * TICK_NANOS)
        );
        let read = reads.snapshot();
        assert_eq!((read.wall_clock, read.monotonic_clock), (2, 1));
    }
}
