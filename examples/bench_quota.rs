//! Real-time benchmark of per-minute quotas in each window shape (issue 25):
//! `cargo run --release --example bench_quota -- [PER_MINUTE] [REQUESTS]`
//! e.g. `... -- 30 90` (no `Retry-After`) or `... -- 120 400 --retry-after 60`.
//!
//! For each shape (anchored, aligned on the clock at three phases, sliding, a per-minute
//! token bucket) the emulator listens on loopback, counts each request 20-60 ms after it
//! arrives and answers within 20 ms more; the job runs `sync` with default flags over
//! REQUESTS add requests of 100 users (groups of 267, the 8,000 memberships in 30
//! groups at 90 requests). All shapes run at once (each waits on its own windows, so they do
//! not compete for the processor). Printed per shape: seconds, the least time the quota
//! allows, their ratio, the bound 1.25 x least + 20 s, requests answered 429, and whether every
//! membership was added with exit 0.

use std::time::{Duration, Instant};

use clap::Parser;
use velt_group_sync::cli::{Cli, Command};
use velt_group_sync::emulator::{Emulator, EmulatorConfig, WindowShape};
use velt_group_sync::interrupt::Interrupt;
use velt_group_sync::output::Output;
use velt_group_sync::sync::Session;

struct Figures {
    shape: String,
    seconds: f64,
    requests: u64,
    throttled: u64,
    complete: bool,
}

async fn run_one(
    shape: WindowShape,
    per_minute: u32,
    requests: usize,
    retry_after: Option<u64>,
) -> Figures {
    let emu = Emulator::start(
        EmulatorConfig {
            window_limit: Some((per_minute, Duration::from_secs(60))),
            window_shape: shape,
            count_delay: (Duration::from_millis(20), Duration::from_millis(60)),
            latency: (Duration::ZERO, Duration::from_millis(20)),
            omit_retry_after: retry_after.is_none(),
            retry_after_secs: retry_after,
            ..EmulatorConfig::default()
        },
        (std::net::Ipv4Addr::LOCALHOST, 0).into(),
    )
    .await
    .expect("emulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.csv");
    let groups = requests.div_ceil(3);
    let per_group = if requests.is_multiple_of(3) {
        267
    } else {
        100 * requests / groups
    };
    let mut text = String::from("organizationId,organizationUserGroupId,userId\n");
    for g in 0..groups {
        for u in 0..per_group {
            text.push_str(&format!("acme,g{g:03},user-{g:03}-{u:04}\n"));
        }
    }
    std::fs::write(&input, text).expect("input");
    let report = dir.path().join("report.csv");
    let base = emu.base_url();
    let cli = Cli::try_parse_from([
        "velt-group-sync",
        "-q",
        "sync",
        input.to_str().expect("path"),
        "--base-url",
        &base,
        "--report",
        report.to_str().expect("path"),
    ])
    .expect("arguments");
    let Command::Sync(args) = cli.command else {
        unreachable!()
    };
    let client = velt_group_sync::client::VeltClient::new(
        &base,
        args.server.api_version,
        &velt_group_sync::client::Credentials::new("key", "token"),
        args.access.timeout,
    )
    .expect("client");
    let session = Session {
        client: Some(client),
        interrupt: Interrupt::new(),
        output: Output {
            quiet: true,
            json_logs: false,
            all_changes: false,
        },
    };
    let started = Instant::now();
    let synced = velt_group_sync::sync::sync(&args, &session).await;
    let seconds = started.elapsed().as_secs_f64();
    let expected = groups * per_group;
    let complete = matches!(synced.result, Ok(0)) && emu.memberships().len() == expected;
    Figures {
        shape: format!("{shape:?}"),
        seconds,
        requests: emu.requests(),
        throttled: emu.throttled(),
        complete,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let per_minute: u32 = positional
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let requests: usize = positional.get(1).and_then(|a| a.parse().ok()).unwrap_or(90);
    let retry_after = args
        .iter()
        .position(|a| a == "--retry-after")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok());
    let shapes = [
        WindowShape::Anchored,
        WindowShape::Aligned(Duration::ZERO),
        WindowShape::Aligned(Duration::from_secs(30)),
        WindowShape::Aligned(Duration::from_millis(58_500)),
        WindowShape::Sliding,
        WindowShape::Bucket,
    ];
    // The least time: full windows of PER_MINUTE, then the last window's share at 10/s.
    let full = (requests as u32 - 1) / per_minute;
    let last = requests as u32 - full * per_minute;
    let least = 60.0 * f64::from(full) + f64::from(last) / 10.0;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let figures = runtime.block_on(futures_util::future::join_all(
        shapes
            .iter()
            .map(|&s| run_one(s, per_minute, requests, retry_after)),
    ));
    println!(
        "{per_minute}/min, {requests} requests, Retry-After: {}; least {least:.1} s, bound {:.1} s",
        retry_after.map_or("none".to_string(), |s| format!("{s}")),
        1.25 * least + 20.0
    );
    for f in figures {
        println!(
            "{:<20} {:>6.1} s  ratio {:.3}  {:>3} of {:>3} requests 429 ({:.1}%)  all added, exit 0: {}",
            f.shape,
            f.seconds,
            f.seconds / least,
            f.throttled,
            f.requests,
            100.0 * f.throttled as f64 / f.requests as f64,
            f.complete
        );
    }
}
