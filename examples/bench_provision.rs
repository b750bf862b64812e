//! Provisioning benchmark against the built-in emulator over HTTP, in real time:
//! `cargo run --release --example bench_provision -- [USERS] [LIMIT] [--runs N]`
//! (defaults: 100000 users, 100 requests/s, 3 runs).
//!
//! The emulator accepts LIMIT requests/s (a token bucket of 5; 429 with `Retry-After: 1`
//! beyond), answers in 20-80 ms, and refuses group adds for users who are not users of the
//! organization. The input holds USERS users (with names and e-mails) in 128 groups of one
//! organization. Per run:
//! 1. `sync --provision-users --rate LIMIT --chunk-size 100` into a fresh organization: the
//!    accepted requests per second from the first request to the last, as a share of the
//!    limit, the 429s, and whether every user and membership is there afterwards;
//! 2. the same input again with `--mode delta`: the reads (organization-user pages against
//!    ceil(USERS / 1000), group pages) and the writes (expected: none).

use std::time::Duration;

use clap::Parser;
use velt_group_sync::cli::{Cli, Command};
use velt_group_sync::client::{Credentials, VeltClient};
use velt_group_sync::emulator::{Call, Emulator, EmulatorConfig};
use velt_group_sync::interrupt::Interrupt;
use velt_group_sync::output::Output;
use velt_group_sync::sync::Session;

const GROUPS: usize = 128;

fn main() {
    let mut positional = Vec::new();
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            _ => positional.push(a),
        }
    }
    let users: usize = positional
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let limit: f64 = positional
        .get(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100.0);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut shares = Vec::new();
    for run in 1..=runs {
        let f = runtime.block_on(run_once(users, limit));
        println!(
            "run {run}: provision {users} users: {} requests in {:.1} s, {:.1}% of {limit}/s, {} 429s, all there: {}; \
             delta: {} user-page reads (pages: {}), {} group reads, {} writes, {:.1} s",
            f.requests,
            f.seconds,
            f.share * 100.0,
            f.throttled,
            f.complete,
            f.user_reads,
            users.div_ceil(1000),
            f.group_reads,
            f.delta_writes,
            f.delta_seconds,
        );
        shares.push(f.share);
    }
    shares.sort_by(f64::total_cmp);
    println!(
        "median of {runs}: {:.1}% of the limit",
        shares[shares.len() / 2] * 100.0
    );
}

struct Figures {
    requests: usize,
    seconds: f64,
    share: f64,
    throttled: u64,
    complete: bool,
    user_reads: usize,
    group_reads: usize,
    delta_writes: usize,
    delta_seconds: f64,
}

async fn run_once(users: usize, limit: f64) -> Figures {
    let emu = Emulator::start(
        EmulatorConfig {
            rate_limit: Some(limit),
            rate_burst: Some(5.0),
            latency: (Duration::from_millis(20), Duration::from_millis(80)),
            retry_after_secs: Some(1),
            require_org_users: true,
            ..EmulatorConfig::default()
        },
        (std::net::Ipv4Addr::LOCALHOST, 0).into(),
    )
    .await
    .expect("emulator");
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.csv");
    let mut text = String::from("organizationId,organizationUserGroupId,userId,name,email\n");
    for i in 0..users {
        text.push_str(&format!(
            "org,g{:03},user-{i:07},User {i},user{i}@bench.example\n",
            i % GROUPS
        ));
    }
    std::fs::write(&input, text).expect("input");
    let rate = limit.to_string();
    let sync = |mode: &'static str| {
        let input = input.clone();
        let report = dir.path().join(format!("{mode}.csv"));
        let base = emu.base_url();
        let rate = rate.clone();
        async move {
            let cli = Cli::try_parse_from([
                "velt-group-sync",
                "-q",
                "sync",
                input.to_str().expect("path"),
                "--base-url",
                &base,
                "--mode",
                mode,
                "--provision-users",
                // The first run provisions a fresh organization.
                "--create-organization",
                "--chunk-size",
                "100",
                "--rate",
                &rate,
                "--report",
                report.to_str().expect("path"),
            ])
            .expect("arguments");
            let Command::Sync(args) = cli.command else {
                unreachable!()
            };
            let client = VeltClient::new(
                &base,
                args.server.api_version,
                &Credentials::new("bench", "bench"),
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
            let started = std::time::Instant::now();
            let result = velt_group_sync::sync::sync(&args, &session).await;
            (result.result.ok(), started.elapsed().as_secs_f64())
        }
    };
    let (code, _) = sync("add").await;
    let mut arrivals: Vec<f64> = emu.arrivals().iter().map(Duration::as_secs_f64).collect();
    arrivals.sort_by(f64::total_cmp);
    let span = arrivals.last().unwrap_or(&0.0) - arrivals.first().unwrap_or(&0.0);
    let accepted = emu.accepted().len();
    let requests = arrivals.len();
    let complete =
        code == Some(0) && emu.org_users("org").len() == users && emu.memberships().len() == users;
    let throttled = emu.throttled();

    let before = emu.call_order().len();
    let (_, delta_seconds) = sync("delta").await;
    let delta: Vec<Call> = emu.call_order()[before..].to_vec();
    let reads = delta.iter().filter(|&&c| c == Call::GetUsers).count();
    // Every group holds fewer than a page (1000): one read each; the rest read users.
    let group_reads = GROUPS.min(users);
    Figures {
        requests,
        seconds: span,
        // Requests accepted over the time from the first to the last, against the limit
        // (plus the bucket's 5 taken at once at the start).
        share: accepted as f64 / (limit * span + 5.0),
        throttled,
        complete,
        user_reads: reads - group_reads,
        group_reads,
        delta_writes: delta.len() - reads,
        delta_seconds,
    }
}
