//! End-to-end rate benchmark against the built-in emulator:
//! `cargo run --release --example bench_rate -- LIMIT RATE [SECONDS] [LATENCY]`
//! e.g. `... -- 100 100 30 20ms-80ms` or `... -- 60 auto 30`.
//!
//! The emulator accepts LIMIT requests/s (429 + Retry-After beyond) and answers in LATENCY.
//! The job runs `sync --rate RATE --chunk-size 1` over enough memberships to last about
//! SECONDS, and the benchmark prints the accepted requests/s as a fraction of LIMIT, the share
//! of 429s, and (for auto) how long it took to first reach 90% of LIMIT over a 2 s window.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use clap::Parser;
use velt_group_sync::cli::{Cli, Command};
use velt_group_sync::client::{Credentials, VeltClient};
use velt_group_sync::emulator::{Emulator, EmulatorConfig};
use velt_group_sync::interrupt::Interrupt;
use velt_group_sync::output::Output;
use velt_group_sync::sync::Session;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limit: f64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(100.0);
    let rate = args.get(1).cloned().unwrap_or_else(|| limit.to_string());
    let seconds: f64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(30.0);
    let latency = args.get(3).cloned().unwrap_or_else(|| "20ms-80ms".into());
    let latency = parse_latency(&latency);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let emu = Emulator::start(
            EmulatorConfig {
                rate_limit: Some(limit),
                latency,
                ..EmulatorConfig::default()
            },
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        )
        .await
        .expect("emulator");
        let dir = tempfile::tempdir().expect("temp dir");
        let input = dir.path().join("in.csv");
        let report = dir.path().join("report.csv");
        let memberships = (limit * seconds).ceil() as usize;
        let mut text = String::from("organizationId,organizationUserGroupId,userId\n");
        for i in 0..memberships {
            text.push_str(&format!("org,bench,user-{i:07}\n"));
        }
        std::fs::write(&input, text).expect("input");
        let key = dir.path().join("key");
        std::fs::write(&key, "bench").expect("key file");
        let cli = Cli::try_parse_from([
            "velt-group-sync",
            "-q",
            "sync",
            input.to_str().expect("path"),
            "--base-url",
            &emu.base_url(),
            "--chunk-size",
            "1",
            "--rate",
            &rate,
            "--report",
            report.to_str().expect("path"),
            "--api-key-file",
            key.to_str().expect("path"),
            "--auth-token-file",
            key.to_str().expect("path"),
        ])
        .expect("arguments");
        let Command::Sync(sync_args) = cli.command else {
            unreachable!()
        };
        let credentials = Credentials::new("bench", "bench");
        let session = Session {
            client: Some(
                VeltClient::new(
                    &emu.base_url(),
                    sync_args.api_version,
                    &credentials,
                    sync_args.timeout,
                )
                .expect("client"),
            ),
            interrupt: Interrupt::new(),
            output: Output {
                quiet: true,
                json_logs: false,
            },
        };
        let started = Instant::now();
        let code = velt_group_sync::sync::sync(&sync_args, &session)
            .await
            .result
            .map_err(|e| e.to_string());
        let elapsed = started.elapsed().as_secs_f64();
        let mut accepted = emu.accepted();
        accepted.sort();
        let throttled = emu.throttled();
        let total = emu.requests();
        // The rate while the job was sending: from the first request's arrival to the last's
        // (reading the input and the last answer's latency are not the API's doing).
        let first = emu.arrivals().into_iter().min().unwrap_or_default();
        let span = accepted.last().map_or(0.0, |t| (*t - first).as_secs_f64());
        let achieved = accepted.len().saturating_sub(1) as f64 / span.max(1e-9);
        println!(
            "limit {limit}/s, --rate {rate}, latency {:?}-{:?}: {} memberships in {elapsed:.1} s (exit {code:?})",
            latency.0, latency.1, memberships
        );
        println!(
            "accepted {:.1} req/s = {:.1}% of the limit; 429s {throttled} of {total} requests = {:.2}%",
            achieved,
            100.0 * achieved / limit,
            100.0 * throttled as f64 / total.max(1) as f64
        );
        if let Some(t) = time_to_fraction(&accepted, limit, 0.9) {
            println!(
                "first 2 s window at >= 90% of the limit ended {:.1} s after the first request",
                t - first.as_secs_f64()
            );
        }
    });
}

fn time_to_fraction(accepted: &[Duration], limit: f64, fraction: f64) -> Option<f64> {
    let window = Duration::from_secs(2);
    let mut start = 0;
    for end in 0..accepted.len() {
        while accepted[end] - accepted[start] > window {
            start += 1;
        }
        let in_window = (end - start + 1) as f64;
        if accepted[end] >= window && in_window >= fraction * limit * 2.0 {
            return Some(accepted[end].as_secs_f64());
        }
    }
    None
}

fn parse_latency(s: &str) -> (Duration, Duration) {
    let ms = |p: &str| Duration::from_millis(p.trim().trim_end_matches("ms").parse().unwrap_or(0));
    match s.split_once('-') {
        Some((a, b)) => (ms(a), ms(b)),
        None => (ms(s), ms(s)),
    }
}
