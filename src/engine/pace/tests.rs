//! The pacer on a paused clock.

use super::*;
use crate::engine::pace::fit::Fit;

/// Advances the paused clock while sending at the pacer's rate, as the engine would:
/// `secs` seconds of slots, each answered accepted.
async fn send_for(p: &Pacer, secs: f64) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        // A ceiling at its rate hands out `now`: the limiter would pace at the rate.
        let slot = p
            .reserve()
            .max(Instant::now() + Duration::from_secs_f64(1.0 / p.rate()));
        if slot >= end {
            tokio::time::sleep_until(end).await;
            return;
        }
        tokio::time::sleep_until(slot).await;
        p.on_accepted();
    }
}

#[tokio::test(start_paused = true)]
async fn slow_start_doubles_then_searches_from_half_of_what_tripped() {
    let p = Pacer::new(1000.0);
    assert_eq!(p.rate(), 1.0);
    send_for(&p, 3.2).await;
    assert!(p.rate() >= 8.0, "doubling every half second: {}", p.rate());
    let tripped = p.rate();
    p.on_throttled(Instant::now());
    assert_eq!(
        p.rate(),
        tripped / 2.0,
        "half of what tripped, to confirm first"
    );
    // A throttle of a request sent before the cut answers the old rate: ignored.
    p.on_throttled(Instant::now() - Duration::from_millis(1));
    assert_eq!(p.rate(), tripped / 2.0);
}

#[tokio::test(start_paused = true)]
async fn slots_follow_the_schedule() {
    let p = Pacer::new(10.0);
    let a = p.reserve();
    let b = p.reserve();
    let c = p.reserve();
    assert_eq!(b - a, Duration::from_secs_f64(1.0 / p.rate()));
    assert_eq!(c - b, b - a);
}

#[tokio::test(start_paused = true)]
async fn throttles_at_the_held_rate_cut_more_each_time_and_a_fall_is_probed_back() {
    let p = Pacer::ceiling(100.0);
    // Held at the ceiling for a while, then the limit halves: throttles come in a row.
    send_for(&p, 15.0).await;
    let mut rates = vec![];
    for _ in 0..5 {
        p.on_throttled(Instant::now());
        rates.push(p.rate().round());
        send_for(&p, 1.0).await;
    }
    assert_eq!(
        rates,
        [98.0, 94.0, 87.0, 73.0, 49.0],
        "2, 4, 8, 16, 32% cuts"
    );
    // `RETURN_PROBE_AFTER` on, the run probes straight back to where it was.
    send_for(&p, RETURN_PROBE_AFTER.as_secs_f64()).await;
    assert_eq!(
        p.rate(),
        100.0,
        "a return probe to the rate held before the fall"
    );
    // The limit is still low: the probe fails, back to the held rate, no cut.
    p.on_throttled(Instant::now());
    assert_eq!(p.rate().round(), 49.0);
    // The limit came back: the next return probe holds, and the run stays there.
    send_for(&p, RETURN_PROBE_AFTER.as_secs_f64() + 5.0).await;
    assert_eq!(p.rate(), 100.0);
}

#[tokio::test(start_paused = true)]
async fn a_single_late_throttle_costs_two_percent() {
    let p = Pacer::ceiling(100.0);
    send_for(&p, 20.0).await;
    p.on_throttled(Instant::now());
    assert_eq!(p.rate().round(), 98.0);
    send_for(&p, 12.0).await;
    p.on_throttled(Instant::now());
    assert_eq!(p.rate().round(), 96.0, "not in a row: the first cut again");
}

#[tokio::test(start_paused = true)]
async fn a_ceiling_paces_only_after_a_throttle_and_lets_go_when_a_probe_reaches_it() {
    let p = Pacer::ceiling(10.0);
    let now = Instant::now();
    assert_eq!(
        (p.reserve(), p.reserve()),
        (now, now),
        "the limiter paces alone"
    );
    send_for(&p, 1.0).await;
    p.on_throttled(Instant::now());
    assert_eq!(p.rate(), 9.8);
    let a = p.reserve();
    assert!(p.reserve() > a, "engaged below the ceiling");
    // Probes climb back to the ceiling, where the limiter takes over again.
    send_for(&p, 200.0).await;
    assert_eq!(p.rate(), 10.0);
    let now = Instant::now();
    assert_eq!(
        (p.reserve(), p.reserve()),
        (now, now),
        "let go at the ceiling"
    );
}

/// A pacer held at 100/s for a while, throttled once (the limit fell), through the pause, then
/// sending for `secs`: the slots of that run.
async fn fallen_and_sending(bucket: f64, secs: f64) -> (Pacer, Vec<Instant>) {
    // Knowing the server's bucket, as a fit before would have found it.
    let p = Pacer::ceiling(100.0).knowing(Fit::knowing(bucket));
    send_for(&p, 15.0).await;
    p.on_throttled(Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut slots = vec![];
    let end = Instant::now() + Duration::from_secs_f64(secs);
    loop {
        let slot = p.reserve();
        if slot >= end {
            break;
        }
        tokio::time::sleep_until(slot).await;
        slots.push(slot);
    }
    (p, slots)
}

#[tokio::test(start_paused = true)]
async fn answers_of_one_run_coming_back_out_of_order_judge_it_by_the_first_refused() {
    // Both runs see the same two throttled requests of the run after the fall; the second
    // gets them back out of order (latencies vary), the later-sent first.
    let (in_order, slots) = fallen_and_sending(4.0, 0.2).await;
    let (early, late) = (slots[10], slots[16]);
    in_order.on_throttled(early);
    in_order.on_throttled(late);
    let (out_of_order, slots_b) = fallen_and_sending(4.0, 0.2).await;
    assert_eq!(slots_b.len(), slots.len());
    out_of_order.on_throttled(slots_b[16]);
    let misjudged = out_of_order.rate();
    out_of_order.on_throttled(slots_b[10]);
    // The bucket of 4 emptied 10 requests into the run at 98/s: a run that short is read
    // high on purpose, 98 - 4 / (0.102 + 0.010) = 62 (held 0.5% under), not the 75 that the
    // later request alone suggests.
    assert!(misjudged > 70.0, "{misjudged}");
    assert_eq!(out_of_order.rate(), in_order.rate());
    assert!((in_order.rate() - 62.0).abs() < 0.5, "{}", in_order.rate());
    assert_eq!(
        out_of_order.fit().runs().last(),
        in_order.fit().runs().last(),
        "the run ends at the first refused request"
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_failed_probe_the_bucket_the_pause_refilled_goes_at_once() {
    // The server's bucket, as a fit would have found it: 4 requests beyond the limit.
    let p = Pacer::ceiling(100.0).knowing(Fit::knowing(4.0));
    send_for(&p, 15.0).await;
    for _ in 0..5 {
        p.on_throttled(Instant::now());
        send_for(&p, 1.0).await;
    }
    let held = p.rate();
    send_for(&p, RETURN_PROBE_AFTER.as_secs_f64()).await;
    assert_eq!(p.rate(), 100.0, "a return probe");
    p.on_throttled(Instant::now());
    assert_eq!(p.rate(), held, "back to the held rate");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let now = Instant::now();
    let slots: Vec<Instant> = (0..6).map(|_| p.reserve()).collect();
    let gap = Duration::from_secs_f64(1.0 / held);
    assert_eq!(
        slots,
        [now, now, now, now, now + gap, now + 2 * gap],
        "three at once (the bucket less one), beside the first of the schedule"
    );
    // A run that began with a burst did not start from a full bucket: no point for the fit.
    let runs = p.fit().runs().count();
    tokio::time::sleep(Duration::from_secs(1)).await;
    p.on_throttled(Instant::now());
    assert_eq!(p.fit().runs().count(), runs);
}

#[tokio::test(start_paused = true)]
async fn a_run_long_enough_is_read_at_the_middle_of_its_last_slot() {
    let (p, slots) = fallen_and_sending(4.0, 1.0).await;
    // Refused 60 requests into the run at 98/s: the bucket emptied between slot 59 and 60, so
    // the run lasted about 59.5 slots, and the limit is 98 - 4 / (59.5 / 98) = 91.4, held
    // 0.5% under. (Read high, as a short run is, it would be 91.6.)
    p.on_throttled(slots[60]);
    let took = (slots[60] - slots[0]).as_secs_f64() - 0.5 / 98.0;
    let expected = (98.0 - 4.0 / took) * UNDER;
    assert!(
        (p.rate() - expected).abs() < 0.01,
        "{} against {expected}",
        p.rate()
    );
}
