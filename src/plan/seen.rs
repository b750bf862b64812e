//! The planner's de-duplication table.

/// The de-duplication table: open addressing with linear probing over one `u64` per slot,
/// `(membership index + 1) << 32 | 32 bits of hash`, 0 for empty.
///
/// On inputs of millions of rows nearly every lookup misses the cache, so the table is laid
/// out for that: a slot's hash and index share one word (one miss, where a SwissTable
/// touches its control bytes and its slot apart), and `prefetch` lets the planner ask for a
/// slot a few records before it needs it. Entries are never removed.
#[derive(Default)]
pub(super) struct SeenTable {
    slots: Vec<u64>,
    len: usize,
    /// `64 - log2(slots.len())`: a slot is the top bits of a multiplicative hash.
    shift: u32,
}

impl SeenTable {
    fn home(&self, short: u32) -> usize {
        (u64::from(short).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// Whether a membership equal by `same` is present; if not, `index` is inserted.
    pub fn find_or_insert(&mut self, short: u32, index: u32, same: impl Fn(u32) -> bool) -> bool {
        // At most 3/4 full, so probes stay short and one always ends on an empty slot.
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut at = self.home(short);
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                self.slots[at] = (u64::from(index) + 1) << 32 | u64::from(short);
                self.len += 1;
                return false;
            }
            if slot as u32 == short && same((slot >> 32) as u32 - 1) {
                return true;
            }
            at = (at + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(1024);
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        self.shift = 64 - size.trailing_zeros();
        let mask = size - 1;
        for slot in old.into_iter().filter(|&s| s != 0) {
            let mut at = self.home(slot as u32);
            while self.slots[at] != 0 {
                at = (at + 1) & mask;
            }
            self.slots[at] = slot;
        }
    }

    /// Asks the CPU to start loading the slot where `short` would be found.
    pub fn prefetch(&self, short: u32) {
        if self.slots.is_empty() {
            return;
        }
        let at = self.home(short);
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // SAFETY: SSE is part of the x86_64 baseline, and a prefetch is only a hint: it
            // dereferences nothing and cannot fault. The pointer is in bounds anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(self.slots[at..].as_ptr().cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = at;
    }
}
