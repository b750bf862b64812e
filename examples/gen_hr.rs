//! Writes a large HR export (one row per employee) and its group map for benchmarks:
//! `cargo run --release --example gen_hr -- ROWS MAP.csv > hr.csv`.
//! Columns: Employee ID, Email, Department (120 names), Location (80 names), Status
//! (one in 20 `Inactive`). MAP.csv maps all 200 department and location names to group IDs.
//! The output is the same for the same arguments.

use std::io::{self, BufWriter, Write};

const DEPARTMENTS: u64 = 120;
const LOCATIONS: u64 = 80;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let map_path = args.next().unwrap_or_else(|| "hr-map.csv".into());
    let mut map = BufWriter::new(std::fs::File::create(&map_path)?);
    writeln!(map, "source,organizationUserGroupId,name,column")?;
    for d in 0..DEPARTMENTS {
        writeln!(
            map,
            "Department {d} & Co,dept-{d:03},Department {d},Department"
        )?;
    }
    for l in 0..LOCATIONS {
        writeln!(map, "Office {l} (São Paulo),loc-{l:03},Office {l},Location")?;
    }
    map.flush()?;

    let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
    writeln!(out, "Employee ID,Email,Department,Location,Status")?;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..rows {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let d = (state >> 33) % DEPARTMENTS;
        let l = (state >> 17) % LOCATIONS;
        let status = if (state >> 41).is_multiple_of(20) {
            "Inactive"
        } else {
            "Active"
        };
        writeln!(
            out,
            "{i},Person.{i:07}@Acme.example,Department {d} & Co,Office {l} (São Paulo),{status}"
        )?;
    }
    out.flush()
}
