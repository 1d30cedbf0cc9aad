//! Region allocation for linear memory and the function table.
//!
//! Both spaces are handled by one first-fit allocator over a sorted free list. Space enters
//! the list only when the core decides to grow (new memory pages, new table slots) and when a
//! module is unloaded; regions freed by an unload are marked dirty so the next user gets a
//! zeroing op, while freshly grown space is known to be zero already.

use crate::prelude::*;

/// Wasm page size.
pub const PAGE: u64 = 65536;

/// Round `v` up to a multiple of `align` (a power of two). `None` on overflow.
pub fn align_up(v: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    v.checked_add(align - 1).map(|x| x & !(align - 1))
}

/// A free range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeRange {
    /// First unit.
    pub start: u64,
    /// Number of units.
    pub len: u64,
    /// Held data before (must be zeroed before reuse).
    pub dirty: bool,
}

/// A granted allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// First unit.
    pub start: u64,
    /// Whether any part of it was used before and must be zeroed.
    pub dirty: bool,
}

/// First-fit allocator over a sorted, coalesced free list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionAlloc {
    free: Vec<FreeRange>,
}

impl RegionAlloc {
    /// An allocator with no free space.
    pub const fn new() -> Self {
        Self { free: Vec::new() }
    }

    /// The free list, sorted by start.
    pub fn free_ranges(&self) -> &[FreeRange] {
        &self.free
    }

    /// Total free units.
    pub fn free_total(&self) -> u64 {
        self.free.iter().map(|f| f.len).sum()
    }

    /// Take `len` units aligned to `align` (a power of two) from the free list, if any range
    /// fits. Zero-length requests get an aligned address without consuming space.
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<Grant> {
        for i in 0..self.free.len() {
            let f = self.free[i];
            let Some(start) = align_up(f.start, align) else {
                continue;
            };
            let pad = start - f.start;
            if pad > f.len || f.len - pad < len {
                continue;
            }
            if len == 0 {
                return Some(Grant {
                    start,
                    dirty: false,
                });
            }
            let tail_start = start + len;
            let tail_len = f.len - pad - len;
            self.free.remove(i);
            let mut at = i;
            if pad > 0 {
                self.free.insert(
                    at,
                    FreeRange {
                        start: f.start,
                        len: pad,
                        dirty: f.dirty,
                    },
                );
                at += 1;
            }
            if tail_len > 0 {
                self.free.insert(
                    at,
                    FreeRange {
                        start: tail_start,
                        len: tail_len,
                        dirty: f.dirty,
                    },
                );
            }
            return Some(Grant {
                start,
                dirty: f.dirty,
            });
        }
        None
    }

    /// Return `[start, start + len)` to the free list, coalescing with neighbours. The range
    /// must not overlap free space (the core only frees what it granted).
    pub fn free(&mut self, start: u64, len: u64, dirty: bool) {
        if len == 0 {
            return;
        }
        let i = self.free.partition_point(|f| f.start < start);
        debug_assert!(i == 0 || self.free[i - 1].start + self.free[i - 1].len <= start);
        debug_assert!(i == self.free.len() || start + len <= self.free[i].start);
        self.free.insert(i, FreeRange { start, len, dirty });
        // Merge with the next, then with the previous.
        if i + 1 < self.free.len()
            && self.free[i].start + self.free[i].len == self.free[i + 1].start
        {
            let next = self.free.remove(i + 1);
            self.free[i].len += next.len;
            self.free[i].dirty |= next.dirty;
        }
        if i > 0 && self.free[i - 1].start + self.free[i - 1].len == self.free[i].start {
            let cur = self.free.remove(i);
            self.free[i - 1].len += cur.len;
            self.free[i - 1].dirty |= cur.dirty;
        }
    }

    /// The free range ending exactly at `end`, if any (space at the top that a grow can extend).
    pub fn tail_at(&self, end: u64) -> Option<FreeRange> {
        self.free.last().copied().filter(|f| f.start + f.len == end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator, so property tests need no extra dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn splits_and_coalesces() {
        let mut a = RegionAlloc::new();
        a.free(0, 100, false);
        let g = a.alloc(10, 16).unwrap();
        assert_eq!(
            g,
            Grant {
                start: 0,
                dirty: false
            }
        );
        let g2 = a.alloc(10, 16).unwrap();
        assert_eq!(g2.start, 16);
        assert_eq!(
            a.free_ranges(),
            &[
                FreeRange {
                    start: 10,
                    len: 6,
                    dirty: false
                },
                FreeRange {
                    start: 26,
                    len: 74,
                    dirty: false
                }
            ]
        );
        a.free(0, 10, true);
        a.free(16, 10, true);
        assert_eq!(
            a.free_ranges(),
            &[FreeRange {
                start: 0,
                len: 100,
                dirty: true
            }]
        );
        assert!(a.alloc(101, 1).is_none());
    }

    /// Property: over random alloc/free sequences, grants never overlap each other or free
    /// space, alignment is kept, and freeing everything restores one range.
    #[test]
    fn random_sequences_keep_invariants() {
        for seed in 1..200u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut a = RegionAlloc::new();
            let total = 1 << 16;
            a.free(0, total, false);
            let mut live: Vec<(u64, u64)> = Vec::new();
            for _ in 0..200 {
                if !rng.next().is_multiple_of(3) || live.is_empty() {
                    let len = rng.next() % 700 + 1;
                    let align = 1 << (rng.next() % 9);
                    if let Some(g) = a.alloc(len, align) {
                        assert_eq!(g.start % align, 0, "alignment kept");
                        for &(s, l) in &live {
                            assert!(g.start + len <= s || s + l <= g.start, "no overlap");
                        }
                        for f in a.free_ranges() {
                            assert!(g.start + len <= f.start || f.start + f.len <= g.start);
                        }
                        live.push((g.start, len));
                    }
                } else {
                    let i = (rng.next() as usize) % live.len();
                    let (s, l) = live.swap_remove(i);
                    a.free(s, l, true);
                }
                let used: u64 = live.iter().map(|l| l.1).sum();
                assert_eq!(used + a.free_total(), total, "space is conserved");
                for w in a.free_ranges().windows(2) {
                    assert!(w[0].start + w[0].len < w[1].start, "sorted and coalesced");
                }
            }
            for (s, l) in live.drain(..) {
                a.free(s, l, true);
            }
            assert_eq!(
                a.free_ranges().len(),
                1,
                "everything freed coalesces into one range"
            );
            // Reuse after free: the same request fits again at the lowest address.
            assert_eq!(a.alloc(total, 1).unwrap().start, 0);
        }
    }
}
