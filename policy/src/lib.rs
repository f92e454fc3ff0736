//! What a connector may read: references reduced to canonical secret names
//! ([`name`]) and checked against its allowlist ([`policy`]).
//!
//! A crate of its own, with no dependencies, so that the rules every
//! reference passes through can be read in one place and fuzzed in
//! isolation.
#![deny(missing_docs)]

pub mod name;
pub mod policy;
