//! The one place locks live. Adapters share a [`Linker`] between instance groups (threads)
//! behind this lock: plan, apply and commit happen while holding it, so no two plans are ever
//! outstanding at once.

use crate::Linker;

/// A linker shared between threads.
pub type SharedLinker = spin::Mutex<Linker>;
