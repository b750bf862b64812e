//! Pacing, retries and waits, on a paused clock: the library's `sync` runs in-process against
//! an in-process emulator, so seconds of Retry-After, backoff and rate limiting take
//! milliseconds, and every timing is exact. What is asserted is what an operator would see:
//! report rows, exit codes, and what the server received and when.

use std::time::Duration;

use crate::common::*;
use velt_group_sync::emulator::{Emulator, EmulatorConfig};
use velt_group_sync::interrupt::Interrupt;

/// A 429 with Retry-After holds every request of the run, not only the one that got it.
async fn retry_after_pauses_the_whole_run(http_date: bool) {
    let emu = in_process_emulator(EmulatorConfig {
        rate_limit: Some(2.0),
        retry_after_secs: Some(2),
        retry_after_http_date: http_date,
        ..EmulatorConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 6);
    let run = sync_in_process(
        &emu,
        dir.path(),
        &["--chunk-size", "1", "--rate", "50", "--concurrency", "4"],
    )
    .await;
    assert_eq!(run.result.unwrap(), 0);
    assert_eq!(held(&emu).len(), 6);
    let arrivals = emu.arrivals();
    // The third request is the first one over the emulator's limit of 2.
    let first_429 = arrivals[2];
    let quiet = arrivals
        .iter()
        .filter(|&&t| {
            t > first_429 + Duration::from_millis(100) && t < first_429 + Duration::from_secs(2)
        })
        .count();
    assert_eq!(quiet, 0, "requests went out during the pause: {arrivals:?}");
    assert!(arrivals.len() > 6, "the limit was hit: {arrivals:?}");
}

#[tokio::test(start_paused = true)]
async fn retry_after_in_seconds_pauses_the_whole_run() {
    retry_after_pauses_the_whole_run(false).await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_an_http_date_pauses_the_whole_run() {
    retry_after_pauses_the_whole_run(true).await;
}

/// The rate seen by the server over 200 requests: never above rate + burst in any second.
#[tokio::test(start_paused = true)]
async fn the_server_never_sees_more_than_rate_plus_burst() {
    let emu = in_process_emulator(EmulatorConfig {
        latency: (Duration::from_millis(5), Duration::from_millis(40)),
        ..EmulatorConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 200);
    let args = [
        "--chunk-size",
        "1",
        "--rate",
        "50",
        "--burst",
        "3",
        "--concurrency",
        "8",
    ];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(run.result.unwrap(), 0);
    let arrivals = emu.arrivals();
    assert_eq!(arrivals.len(), 200);
    let most = max_in_window(&arrivals, Duration::from_secs(1));
    // rate + burst, and one request of slack for a window edge.
    assert!(
        most <= 54,
        "{most} requests in one second at --rate 50 --burst 3"
    );
    // And it is used: 200 requests at 50/s take about 4 s, not much more.
    let span = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    assert!(span < Duration::from_millis(4_100), "{span:?}");
}

/// 10% 503, 5% 500, 5% dropped before and 2% after applying, a rate limit with Retry-After,
/// 20-80 ms answers: every membership ends added and the report agrees with the server.
#[tokio::test(start_paused = true)]
async fn a_faulty_server_still_ends_with_every_membership_added_and_the_report_agreeing() {
    let emu = in_process_emulator(EmulatorConfig {
        rate_limit: Some(40.0),
        unavailable_fraction: 0.10,
        internal_fraction: 0.05,
        drop_before_fraction: 0.05,
        drop_after_fraction: 0.02,
        latency: (Duration::from_millis(20), Duration::from_millis(80)),
        ..EmulatorConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 10, 300);
    let args = [
        "--chunk-size",
        "25",
        "--rate",
        "45",
        "--concurrency",
        "8",
        "--max-backoff",
        "2s",
    ];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(run.result.unwrap(), 0);
    assert_eq!(run.rows.len(), 3000, "one row per membership, none twice");
    let added = rows_with(&run.rows, "added");
    assert_eq!(added.len(), 3000);
    assert_eq!(
        added,
        held(&emu),
        "the report agrees row for row with the server"
    );
    assert!(run.stats.retries > 0, "faults were met and retried");
}

/// A low --concurrency must not cap the rate: 20 requests/s at 200 ms each need 4+ in flight.
#[tokio::test(start_paused = true)]
async fn concurrency_rises_to_what_rate_times_latency_needs() {
    let emu = in_process_emulator(EmulatorConfig {
        latency: (Duration::from_millis(200), Duration::from_millis(200)),
        ..EmulatorConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 60);
    let args = ["--chunk-size", "1", "--rate", "20", "--concurrency", "1"];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(run.result.unwrap(), 0);
    let arrivals = emu.arrivals();
    let span = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    // One at a time this would take 60 x 200 ms = 12 s; at 20/s it is about 3 s.
    assert!(span < Duration::from_millis(3_500), "{span:?}");
}

/// The accepted requests per second between `from` and `to` seconds of the emulator's clock.
fn accepted_rate(emu: &Emulator, from: f64, to: f64) -> f64 {
    let n = emu
        .accepted()
        .iter()
        .filter(|t| (from..to).contains(&t.as_secs_f64()))
        .count();
    n as f64 / (to - from)
}

/// A token bucket of the kind the README's figures are measured against: burst 5,
/// `Retry-After: 1`, 20-80 ms.
fn bucket(limit: f64) -> EmulatorConfig {
    EmulatorConfig {
        rate_limit: Some(limit),
        rate_burst: Some(5.0),
        retry_after_secs: Some(1),
        latency: (Duration::from_millis(20), Duration::from_millis(80)),
        ..EmulatorConfig::default()
    }
}

/// --rate auto finds an unknown limit and holds just under it: after the first 20 s it gets
/// nearly all of it, with few 429s. (The README's figures come from real-time runs of
/// `examples/bench_rate`; this guards the behaviour on a paused clock.)
#[tokio::test(start_paused = true)]
async fn auto_rate_holds_just_under_an_unknown_limit() {
    let emu = in_process_emulator(bucket(40.0));
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 2400);
    let run = sync_in_process(&emu, dir.path(), &["--chunk-size", "1", "--rate", "auto"]).await;
    assert_eq!(run.result.unwrap(), 0);
    assert_eq!(held(&emu).len(), 2400);
    let throttled = emu.throttled() as f64 / emu.requests() as f64;
    assert!(throttled < 0.02, "{:.1}% answered 429", throttled * 100.0);
    let end = emu.accepted().iter().max().unwrap().as_secs_f64();
    let rate = accepted_rate(&emu, 20.0, end);
    assert!(
        rate >= 0.93 * 40.0,
        "{rate:.1}/s after 20 s of a 40/s limit"
    );
}

/// A limit that halves and comes back is followed both ways within seconds.
#[tokio::test(start_paused = true)]
async fn auto_rate_follows_a_limit_that_halves_and_comes_back() {
    let emu = std::sync::Arc::new(in_process_emulator(bucket(60.0)));
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 4500);
    let changes = {
        let emu = emu.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(40)).await;
            emu.set_rate_limit(30.0);
            tokio::time::sleep(Duration::from_secs(30)).await;
            emu.set_rate_limit(60.0);
        })
    };
    let run = sync_in_process(&emu, dir.path(), &["--chunk-size", "1", "--rate", "auto"]).await;
    changes.await.unwrap();
    assert_eq!(run.result.unwrap(), 0);
    // Within 10 s of each change, a 2 s window gets at least 90% of the new limit.
    let back_within = |change: f64, limit: f64| {
        (0..=80)
            .map(|i| change + 2.0 + f64::from(i) * 0.1)
            .find(|&end| accepted_rate(&emu, end - 2.0, end) >= 0.9 * limit)
            .map(|end| end - change)
    };
    let halved = back_within(40.0, 30.0);
    assert!(halved.is_some(), "not back above 90% of 30/s within 10 s");
    let restored = back_within(70.0, 60.0);
    assert!(restored.is_some(), "not back above 90% of 60/s within 10 s");
}

/// --max-rate caps --rate auto: against a server with no limit, auto climbs to the cap and
/// no further.
#[tokio::test(start_paused = true)]
async fn max_rate_caps_auto() {
    let emu = in_process_emulator(EmulatorConfig::default());
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 120);
    let args = ["--chunk-size", "1", "--rate", "auto", "--max-rate", "8"];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(run.result.unwrap(), 0);
    let most = max_in_window(&emu.arrivals(), Duration::from_secs(1));
    // The cap plus the burst, and one request of slack for a window edge.
    assert!(
        (7..=10).contains(&most),
        "{most} in one second at --max-rate 8"
    );
}

/// The protocol owners' floors: at least 1 s before retrying a 500 or a 503, and a 429
/// without Retry-After pauses the run (1 s, then longer) instead of retrying at once.
#[tokio::test(start_paused = true)]
async fn retries_wait_at_least_the_floor_after_500_503_and_429() {
    let failing = |config| (config, 1, 0);
    for (config, users, skip) in [
        failing(EmulatorConfig {
            internal_fraction: 1.0,
            ..EmulatorConfig::default()
        }),
        failing(EmulatorConfig {
            unavailable_fraction: 1.0,
            ..EmulatorConfig::default()
        }),
        // One request a window: the first user goes through, the second is throttled.
        (
            EmulatorConfig {
                rate_limit: Some(0.001),
                omit_retry_after: true,
                ..EmulatorConfig::default()
            },
            2,
            1,
        ),
    ] {
        let emu = in_process_emulator(config);
        let dir = tempfile::tempdir().unwrap();
        write_groups(dir.path(), 1, users);
        let args = [
            "--chunk-size",
            "1",
            "--max-retries",
            "2",
            "--max-throttle-wait",
            "10s",
        ];
        let run = sync_in_process(&emu, dir.path(), &args).await;
        assert_eq!(run.result.unwrap(), 1);
        let mut arrivals = emu.arrivals();
        arrivals.sort();
        let tries = &arrivals[skip..];
        assert!(tries.len() >= 3, "{arrivals:?}");
        for pair in tries.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_secs(1),
                "sent again after {gap:?}: {arrivals:?}"
            );
        }
    }
}

/// While most attempts fail, the retry budget runs dry and slows retries down to a trickle,
/// so a failing API is not met with a storm.
#[tokio::test(start_paused = true)]
async fn the_retry_budget_slows_the_run_while_most_attempts_fail() {
    let emu = in_process_emulator(EmulatorConfig {
        unavailable_fraction: 1.0,
        ..EmulatorConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 400);
    let args = [
        "--chunk-size",
        "1",
        "--rate",
        "200",
        "--concurrency",
        "64",
        "--max-retries",
        "3",
        "--max-backoff",
        "1s",
    ];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(run.result.unwrap(), 1);
    assert!(run.rows.iter().all(|r| r["status"] == "failed"));
    // 400 requests x 3 retries = 1,200 retries. The budget (500 tokens, 5 a retry, refilled
    // at the rate) lets the first 100 through at once; the rest come at about 40 a second.
    let retries: Vec<Duration> = {
        let mut a = emu.arrivals();
        a.sort();
        a.split_off(400)
    };
    let span = *retries.last().unwrap() - retries[0];
    assert!(span >= Duration::from_secs(20), "1,200 retries in {span:?}");
}

/// After the first signal, in-flight requests get --grace to finish; then the run stops and
/// what was on the wire is `unconfirmed`.
#[tokio::test(start_paused = true)]
async fn grace_expires_and_requests_still_in_flight_are_unconfirmed() {
    let emu = in_process_emulator(EmulatorConfig {
        latency: (Duration::from_secs(30), Duration::from_secs(30)),
        ..EmulatorConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 6, 1);
    let interrupt = Interrupt::new();
    let stopper = interrupt.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stopper.signal(143);
    });
    let started = tokio::time::Instant::now();
    let args = [
        "--chunk-size",
        "1",
        "--concurrency",
        "2",
        "--max-concurrency",
        "2",
        "--grace",
        "5s",
    ];
    let run = sync_in_process_with(&emu, dir.path(), &args, interrupt).await;
    assert_eq!(run.result.unwrap(), 143);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(6) && took < Duration::from_secs(7),
        "{took:?}"
    );
    assert_eq!(
        rows_with(&run.rows, "unconfirmed").len(),
        2,
        "{:?}",
        run.rows
    );
    assert_eq!(rows_with(&run.rows, "not_attempted").len(), 4);
}

/// --timeout bounds an attempt; a request that timed out may have been applied.
#[tokio::test(start_paused = true)]
async fn a_timeout_leaves_the_users_unconfirmed() {
    let emu = in_process_emulator(EmulatorConfig {
        latency: (Duration::from_secs(10), Duration::from_secs(10)),
        ..EmulatorConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 3);
    let run = sync_in_process(&emu, dir.path(), &["--timeout", "2s", "--max-retries", "1"]).await;
    assert_eq!(run.result.unwrap(), 1);
    assert_eq!(rows_with(&run.rows, "unconfirmed").len(), 3);
    assert!(
        run.rows
            .iter()
            .all(|r| r["message"].contains("--timeout") && r["attempts"] == "2")
    );
}

/// Reads share the adds' rate limit, retries and classification: under a 20/s limit no
/// second of reads holds more than 21 calls, and 503s on reads are retried to a clean result.
#[tokio::test(start_paused = true)]
async fn reads_keep_the_rate_limit_and_are_retried() {
    use velt_group_sync::emulator::Call;
    let emu = in_process_emulator(EmulatorConfig {
        unavailable_fraction: 0.3,
        ..EmulatorConfig::default()
    });
    let mut input = String::from("orgId,groupId,userId\n");
    for g in 0..40 {
        let group = format!("g{g:02}");
        emu.seed("acme", &group, ["u1"]);
        input.push_str(&format!("acme,{group},u1\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let args = ["--mode", "delta", "--rate", "20", "--max-backoff", "200ms"];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(run.result.unwrap(), 0, "every read got through in the end");
    assert!(
        run.rows.iter().all(|r| r["status"] == "unchanged"),
        "{:?}",
        run.rows
    );
    assert_eq!(emu.calls(Call::Add), 0);
    assert!(
        emu.calls(Call::GetUsers) > 40,
        "some reads met a 503 and were sent again"
    );
    let most = max_in_window(&emu.arrivals(), Duration::from_secs(1));
    // rate + burst, and one request of slack for a window edge.
    assert!(most <= 22, "{most} calls in one second at --rate 20");
}

/// Mirror sends every add before the first removal, whatever the concurrency and however
/// long an add takes to get through (503s, retried after backoff), so that a run cut short
/// has done the safe half.
#[tokio::test(start_paused = true)]
async fn every_add_goes_before_the_first_removal() {
    use velt_group_sync::emulator::Call;
    let emu = in_process_emulator(EmulatorConfig {
        latency: (Duration::from_millis(20), Duration::from_millis(80)),
        unavailable_fraction: 0.3,
        ..EmulatorConfig::default()
    });
    let mut input = String::from("orgId,groupId,userId\n");
    for g in 0..8 {
        let group = format!("g{g}");
        // 10 current members, 1 of whom the input drops; 3 new ones to add.
        emu.seed("acme", &group, (0..10).map(|u| format!("u{u}")));
        for u in 1..13 {
            input.push_str(&format!("acme,{group},u{u}\n"));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.csv"), input).unwrap();
    let args = [
        "--mode",
        "mirror",
        "--chunk-size",
        "1",
        "--rate",
        "100",
        "--concurrency",
        "16",
    ];
    let run = sync_in_process(&emu, dir.path(), &args).await;
    assert_eq!(run.result.unwrap(), 0);
    assert_eq!(held(&emu).len(), 8 * 12);
    let order: Vec<Call> = emu
        .call_order()
        .into_iter()
        .filter(|c| *c != Call::GetUsers)
        .collect();
    let last_add = order.iter().rposition(|c| *c == Call::Add).unwrap();
    let first_delete = order.iter().position(|c| *c == Call::Delete).unwrap();
    assert!(last_add < first_delete, "{order:?}");
}
