//! Local work without the network: parse + plan, and writing the report, for a generated CSV
//! of 100,000 rows over 200 groups (the shape of `examples/gen`).
//! Run with `cargo bench --bench local`; whole-file figures come from `examples/gen` and
//! `sync --dry-run` (see README, Performance).

use velt_group_sync::input::FormatArg;
use velt_group_sync::input::{self, InputOptions};
use velt_group_sync::ledger::Ledger;
use velt_group_sync::outcome::Status;
use velt_group_sync::plan::{Defaults, Plan, Planner};
use velt_group_sync::report::ReportFormat;
use velt_group_sync::report::{self, Summary};

const ROWS: u64 = 100_000;

fn csv_input() -> Vec<u8> {
    let mut out = String::from("organizationId,organizationUserGroupId,userId\n");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..ROWS {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let g = (state >> 33) % 200;
        out.push_str(&format!("org-{},group-{g:03},user-{i:07}\n", g % 4));
    }
    out.into_bytes()
}

fn options() -> InputOptions {
    InputOptions {
        format: FormatArg::Csv,
        ..InputOptions::default()
    }
}

fn plan(bytes: &[u8]) -> Plan {
    let mut planner = Planner::new(Defaults::default());
    input::read(bytes, "bench.csv", None, &options(), &mut planner).expect("valid input");
    planner.finish()
}

#[divan::bench]
fn parse_and_plan_100k(bencher: divan::Bencher) {
    let bytes = csv_input();
    bencher
        .counter(divan::counter::ItemsCount::new(ROWS))
        .bench(|| plan(divan::black_box(&bytes)));
}

#[divan::bench]
fn write_csv_report_100k(bencher: divan::Bencher) {
    let plan = plan(&csv_input());
    let ledger = Ledger::new(&plan, false, Status::Planned);
    let summary = Summary::new(report::count(&plan, &ledger), 0, 0, Default::default());
    let mut out = Vec::with_capacity(8 << 20);
    bencher
        .counter(divan::counter::ItemsCount::new(ROWS))
        .bench_local(|| {
            out.clear();
            report::write_rows(&mut out, ReportFormat::Csv, &plan, &ledger, &summary)
                .expect("in memory");
            out.len()
        });
}

fn main() {
    divan::main();
}
