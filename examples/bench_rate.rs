//! End-to-end rate benchmark against the built-in emulator:
//! `cargo run --release --example bench_rate -- LIMIT RATE [SECONDS] [options]`
//! e.g. `... -- 100 100 30` (a known rate) or `... -- 60 auto 75` (an unknown limit).
//!
//! The emulator accepts LIMIT requests/s (a token bucket of `--burst` requests, 5 by default;
//! 429 with `Retry-After: 1` beyond) and answers in `--latency` (20ms-80ms). The job runs
//! `sync --rate RATE --chunk-size 1` for SECONDS (then it is stopped as by SIGINT) and the
//! benchmark prints, per run and as medians over `--runs N` (default 1):
//! - the accepted requests/s after `--warmup` seconds (20) as a share of the limit: every
//!   request accepted from then to the end of the run, over that time;
//! - the share of requests answered 429 (over the whole run);
//! - the run-wide pauses: gaps of 0.8 s or more between requests reaching the server;
//! - the accepted share in the first and second half of the time after the warm-up (a
//!   downward drift shows as a lower second half).
//!
//! `--change AT`: the limit halves AT seconds into the run and doubles back 30 s later
//! (`--restore-after S` to move that; the case is 30); for
//! each change the benchmark prints how long until a 2 s window was back above 90% of the new
//! limit, and the accepted share from 10 s after the change to the next change (or the end).
//!
//! `--simulate`: in-process on a paused clock (minutes in seconds, for tuning; the README's
//! figures come from real-time runs without it).

use std::time::Duration;

use clap::Parser;
use velt_group_sync::cli::{Cli, Command};
use velt_group_sync::client::{Credentials, VeltClient};
use velt_group_sync::emulator::{Emulator, EmulatorConfig};
use velt_group_sync::interrupt::Interrupt;
use velt_group_sync::output::Output;
use velt_group_sync::sync::Session;

#[derive(Debug, Clone)]
struct Bench {
    limit: f64,
    rate: String,
    seconds: f64,
    latency: (Duration, Duration),
    burst: f64,
    warmup: f64,
    change: Option<f64>,
    /// How long the halved limit lasts before it doubles back (30 s).
    restore_after: f64,
    runs: usize,
    simulate: bool,
}

fn parse_args() -> Bench {
    let mut positional = Vec::new();
    let mut b = Bench {
        limit: 100.0,
        rate: String::new(),
        seconds: 30.0,
        latency: (Duration::from_millis(20), Duration::from_millis(80)),
        burst: 5.0,
        warmup: 20.0,
        change: None,
        restore_after: 30.0,
        runs: 1,
        simulate: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().expect("a value after the flag");
        match a.as_str() {
            "--latency" => b.latency = parse_latency(&value()),
            "--burst" => b.burst = value().parse().expect("--burst N"),
            "--warmup" => b.warmup = value().parse().expect("--warmup S"),
            "--change" => b.change = Some(value().parse().expect("--change AT")),
            "--restore-after" => b.restore_after = value().parse().expect("--restore-after S"),
            "--runs" => b.runs = value().parse().expect("--runs N"),
            "--simulate" => b.simulate = true,
            _ => positional.push(a),
        }
    }
    b.limit = positional
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(100.0);
    b.rate = positional
        .get(1)
        .cloned()
        .unwrap_or_else(|| b.limit.to_string());
    b.seconds = positional
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30.0);
    b
}

/// One run's figures.
#[derive(Debug, Clone, Default)]
struct Figures {
    accepted_share: f64,
    share_429: f64,
    pauses: usize,
    first_half: f64,
    second_half: f64,
    /// Per change: seconds until a 2 s window was above 90%, and the share from +10 s on.
    changes: Vec<(Option<f64>, f64)>,
}

fn main() {
    let bench = parse_args();
    // RUST_LOG=velt_group_sync::engine::pace=debug shows the controller's moves.
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .without_time()
            .with_writer(std::io::stderr)
            .init();
    }
    let mut all = Vec::new();
    for run in 1..=bench.runs {
        let figures = if bench.simulate {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("runtime")
                .block_on(run_once(&bench))
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(run_once(&bench))
        };
        println!("run {run}: {}", describe(&figures));
        all.push(figures);
    }
    if bench.runs > 1 {
        let med = |f: &dyn Fn(&Figures) -> f64| median(all.iter().map(f).collect());
        let mut summary = Figures {
            accepted_share: med(&|f| f.accepted_share),
            share_429: med(&|f| f.share_429),
            pauses: med(&|f| f.pauses as f64) as usize,
            first_half: med(&|f| f.first_half),
            second_half: med(&|f| f.second_half),
            changes: Vec::new(),
        };
        let changes = all.first().map_or(0, |f| f.changes.len());
        for i in 0..changes {
            let back = median(
                all.iter()
                    .map(|f| f.changes[i].0.unwrap_or(f64::INFINITY))
                    .collect(),
            );
            let share = median(all.iter().map(|f| f.changes[i].1).collect());
            summary
                .changes
                .push(((back.is_finite()).then_some(back), share));
        }
        println!("median of {}: {}", bench.runs, describe(&summary));
    }
}

fn describe(f: &Figures) -> String {
    let mut s = format!(
        "accepted {:.1}% of the limit after the warm-up (halves {:.1}% / {:.1}%), 429s {:.2}%, {} run-wide pauses",
        100.0 * f.accepted_share,
        100.0 * f.first_half,
        100.0 * f.second_half,
        100.0 * f.share_429,
        f.pauses
    );
    for (i, (back, share)) in f.changes.iter().enumerate() {
        s.push_str(&format!(
            "; change {}: above 90% after {}, {:.1}% from +10 s on",
            i + 1,
            back.map_or("never".to_string(), |b| format!("{b:.1} s")),
            100.0 * share
        ));
    }
    s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn run_once(b: &Bench) -> Figures {
    let config = EmulatorConfig {
        rate_limit: Some(b.limit),
        rate_burst: Some(b.burst),
        latency: b.latency,
        retry_after_secs: Some(1),
        ..EmulatorConfig::default()
    };
    let emu = if b.simulate {
        Emulator::in_process(config)
    } else {
        Emulator::start(config, (std::net::Ipv4Addr::LOCALHOST, 0).into())
            .await
            .expect("emulator")
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.csv");
    let report = dir.path().join("report.csv");
    // More than the run can send: it is stopped after `seconds`.
    let memberships = (b.limit * b.seconds * 1.5).ceil() as usize + 100;
    let mut text = String::from("organizationId,organizationUserGroupId,userId\n");
    for i in 0..memberships {
        text.push_str(&format!("org,bench,user-{i:07}\n"));
    }
    std::fs::write(&input, text).expect("input");
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
        &b.rate,
        "--report",
        report.to_str().expect("path"),
    ])
    .expect("arguments");
    let Command::Sync(args) = cli.command else {
        unreachable!()
    };
    let credentials = Credentials::new("bench", "bench");
    let client = if b.simulate {
        VeltClient::in_process(
            emu.router(),
            args.server.api_version,
            &credentials,
            args.access.timeout,
        )
    } else {
        VeltClient::new(
            &emu.base_url(),
            args.server.api_version,
            &credentials,
            args.access.timeout,
        )
    }
    .expect("client");
    let interrupt = Interrupt::new();
    let session = Session {
        client: Some(client),
        interrupt: interrupt.clone(),
        output: Output {
            quiet: true,
            json_logs: false,
            all_changes: false,
        },
    };
    let started = tokio::time::Instant::now();
    let seconds = b.seconds;
    let change = b.change;
    let back_after = b.restore_after;
    let limit = b.limit;
    let controller = async {
        if let Some(at) = change {
            tokio::time::sleep(Duration::from_secs_f64(at)).await;
            emu.set_rate_limit(limit / 2.0);
            tokio::time::sleep(Duration::from_secs_f64(back_after)).await;
            emu.set_rate_limit(limit);
        }
        tokio::time::sleep_until(started + Duration::from_secs_f64(seconds)).await;
        interrupt.signal(velt_group_sync::error::exit::SIGINT);
    };
    let (_, _) = tokio::join!(velt_group_sync::sync::sync(&args, &session), controller);

    // Times on the emulator's clock, which started with it (just before `started`).
    let mut accepted: Vec<f64> = emu.accepted().iter().map(Duration::as_secs_f64).collect();
    accepted.sort_by(f64::total_cmp);
    let mut arrivals: Vec<f64> = emu.arrivals().iter().map(Duration::as_secs_f64).collect();
    arrivals.sort_by(f64::total_cmp);
    let first = arrivals.first().copied().unwrap_or(0.0);
    let end = first + seconds;
    let count = |from: f64, to: f64| accepted.iter().filter(|&&t| t >= from && t < to).count();
    // The limit at time t (after the first request), for the change scenario.
    let limit_at = |t: f64| match change {
        Some(at) if t - first >= at && t - first < at + back_after => limit / 2.0,
        _ => limit,
    };
    let share = |from: f64, to: f64| {
        let steps = ((to - from) * 100.0).ceil().max(1.0) as usize;
        let dt = (to - from) / steps as f64;
        let allowed: f64 = (0..steps)
            .map(|i| limit_at(from + (i as f64 + 0.5) * dt) * dt)
            .sum();
        count(from, to) as f64 / allowed.max(1e-9)
    };
    let warm = first + b.warmup;
    let mid = (warm + end) / 2.0;
    let pauses = arrivals
        .windows(2)
        .filter(|w| w[0] < end && w[1] - w[0] >= 0.8)
        .count();
    let total = arrivals.iter().filter(|&&t| t < end).count();
    let mut changes = Vec::new();
    if let Some(at) = change {
        let back_at = first + at + back_after;
        for (c, next) in [(first + at, back_at), (back_at, end)] {
            let new_limit = limit_at(c + 0.001);
            let back = accepted
                .iter()
                .filter(|&&t| t >= c + 2.0 && t < next)
                .find(|&&t| count(t - 2.0, t) as f64 >= 0.9 * new_limit * 2.0)
                .map(|t| t - c);
            changes.push((back, share(c + 10.0, next)));
        }
    }
    if std::env::var_os("BENCH_TIMELINE").is_some() {
        // Accepted and throttled requests per second, for looking at what a run did.
        let line: Vec<String> = (0..seconds.ceil() as usize)
            .map(|i| {
                let t = first + i as f64;
                let all = arrivals.iter().filter(|&&a| a >= t && a < t + 1.0).count();
                let ok = count(t, t + 1.0);
                format!("{i}:{ok}/{}", all - ok)
            })
            .collect();
        eprintln!("timeline (accepted/refused per second): {}", line.join(" "));
    }
    Figures {
        accepted_share: share(warm, end),
        share_429: emu.throttled() as f64 / total.max(1) as f64,
        pauses,
        first_half: share(warm, mid),
        second_half: share(mid, end),
        changes,
    }
}

fn parse_latency(s: &str) -> (Duration, Duration) {
    let ms = |p: &str| Duration::from_millis(p.trim().trim_end_matches("ms").parse().unwrap_or(0));
    match s.split_once('-') {
        Some((a, b)) => (ms(a), ms(b)),
        None => (ms(s), ms(s)),
    }
}
