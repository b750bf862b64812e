//! Writes a large membership CSV for benchmarks:
//! `cargo run --release --example gen -- ROWS [GROUPS] > big.csv`.
//! Rows spread over GROUPS groups (default 200) in 4 organizations; user IDs look like
//! `user-0001234`. The output is the same for the same arguments.

use std::io::{self, BufWriter, Write};

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let groups: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(200)
        .max(1);
    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    writeln!(out, "organizationId,organizationUserGroupId,userId")?;
    // A multiplicative step scatters users over groups, like a real export sorted by user.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..rows {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let g = (state >> 33) % groups;
        writeln!(out, "org-{},group-{g:03},user-{i:07}", g % 4)?;
    }
    out.flush()
}
