//! Reading a server's token bucket off its throttles: how long each run at a known rate took
//! to be throttled gives the bucket's refill rate (the limit) and size. A run starts from a
//! full bucket (after a run-wide pause) and ends at its first throttled request.

use std::collections::VecDeque;

/// Runs kept for the fit.
const RUNS_KEPT: usize = 6;
/// How much longer than measured a run after a fall is taken to have lasted: a slot's
/// sending jitter, so that its reading of the new limit errs high.
const RUN_SLACK: f64 = 0.010;

/// The runs seen so far and what they tell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fit {
    /// (rate, seconds from a full bucket to the throttle) of recent runs.
    runs: VecDeque<(f64, f64)>,
    /// The size of the server's bucket, as the last fit found it.
    bucket: Option<f64>,
    /// The limit last found: by the fit, or by a run after a fall.
    fitted: Option<f64>,
}

impl Fit {
    /// A fit that knows the server's bucket already (as an earlier fit found it).
    pub fn knowing(bucket: f64) -> Fit {
        Fit {
            bucket: Some(bucket),
            ..Fit::default()
        }
    }

    /// The bucket's size, once a fit found it.
    pub fn bucket(&self) -> Option<f64> {
        self.bucket
    }

    /// The runs the next fit reads, oldest first.
    pub fn runs(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.runs.iter().copied()
    }

    /// A run at `rate` that was throttled `took` seconds after it began. A run throttled
    /// below the limit the runs so far fit means the limit moved: they are forgotten.
    pub fn record(&mut self, rate: f64, took: f64) {
        if self.fitted.is_some_and(|limit| rate < limit) {
            self.runs.clear();
        }
        if self.runs.len() == RUNS_KEPT {
            self.runs.pop_front();
        }
        self.runs.push_back((rate, took));
    }

    /// The limit the runs fit, if they fit a bucket (which is then remembered).
    pub fn estimate(&mut self) -> Option<f64> {
        let (limit, size) = fit(&self.runs)?;
        self.bucket = Some(size);
        self.fitted = Some(limit);
        Some(limit)
    }

    /// Throttles in a row at a held rate: the limit may have moved, and runs from before it
    /// would mislead. With the bucket's size known, the last run (`took` seconds at `rate`)
    /// tells the new limit on its own.
    pub fn after_fall(&mut self, rate: f64, took: Option<f64>) -> Option<f64> {
        while self.runs.len() > 1 {
            self.runs.pop_front();
        }
        let limit = limit_of_run(self.bucket?, took?, rate)?;
        self.fitted = Some(limit);
        Some(limit)
    }
}

/// The limit a run at `tried` that emptied a bucket of `size` in `took` seconds tells. The
/// bucket emptied between the slot before and this one: read the middle. A run too short for
/// that to be exact (a big fall) is read high on purpose: a limit read too high costs one
/// more throttle, in a longer run that reads it exactly; one read too low is held, and nothing
/// says so until the next probe.
fn limit_of_run(size: f64, took: f64, tried: f64) -> Option<f64> {
    let slot = 1.0 / tried;
    let middle = tried - size / (took - slot / 2.0).max(slot / 2.0);
    let high = tried - size / (took + RUN_SLACK);
    let limit = if high > middle * 1.01 { high } else { middle };
    (limit > 0.2 * tried && limit < tried).then_some(limit)
}

/// The limit of a token bucket that fits the runs: one that refills at `L` a second and holds
/// `c` is emptied by a rate `r` after `c / (r - L)` seconds, so `r = L + c * (1 / t)`, a line
/// whose intercept is the limit. `None` with fewer than two runs of different lengths, or
/// when the runs do not look like a bucket (a negative size, a limit above a rate that
/// tripped), as a server that limits otherwise would give.
fn fit(runs: &VecDeque<(f64, f64)>) -> Option<(f64, f64)> {
    if runs.len() < 2 {
        return None;
    }
    let n = runs.len() as f64;
    let (mx, my) = runs
        .iter()
        .fold((0.0, 0.0), |(x, y), (r, t)| (x + 1.0 / t / n, y + r / n));
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (r, t) in runs {
        let dx = 1.0 / t - mx;
        sxy += dx * (r - my);
        sxx += dx * dx;
    }
    if sxx <= f64::EPSILON {
        return None;
    }
    let size = sxy / sxx;
    let limit = my - size * mx;
    let lowest = runs.iter().map(|(r, _)| *r).fold(f64::INFINITY, f64::min);
    // A bucket's limit is below every rate it throttled, and not far below: the runs were
    // throttled after a while, not at once.
    (size > 0.0 && limit < lowest && limit > lowest * 0.5).then_some((limit, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_finds_a_token_buckets_limit_from_how_long_runs_lasted() {
        // A bucket of 5 refilling at 100/s empties at rate r after 5 / (r - 100) seconds.
        let runs: VecDeque<(f64, f64)> = [150.0, 120.0, 104.0]
            .iter()
            .map(|&r| (r, 5.0 / (r - 100.0)))
            .collect();
        let (limit, size) = fit(&runs).unwrap();
        assert!((limit - 100.0).abs() < 1e-6, "{limit}");
        assert!((size - 5.0).abs() < 1e-6, "{size}");
        // One run, or runs that no bucket explains, give nothing.
        assert_eq!(fit(&runs.iter().take(1).copied().collect()), None);
        let longer_when_faster = [(150.0, 2.0), (120.0, 1.0)].into_iter().collect();
        assert_eq!(fit(&longer_when_faster), None);
    }

    #[test]
    fn runs_are_kept_forgotten_and_read_through_the_fit() {
        let mut f = Fit::default();
        // A bucket of 5 refilling at 100/s.
        for r in [150.0, 120.0, 104.0] {
            f.record(r, 5.0 / (r - 100.0));
        }
        let limit = f.estimate().expect("a bucket");
        assert!((limit - 100.0).abs() < 1e-6 && (f.bucket().unwrap() - 5.0).abs() < 1e-6);
        // Throttled below the fitted limit: the limit moved, and the runs are forgotten.
        f.record(90.0, 0.5);
        assert_eq!(f.runs().collect::<Vec<_>>(), [(90.0, 0.5)]);
        // Only the last six runs count.
        let mut g = Fit::default();
        for i in 0..8 {
            g.record(200.0 + f64::from(i), 1.0);
        }
        assert_eq!(g.runs().count(), 6);
        assert_eq!(g.runs().next(), Some((202.0, 1.0)));
    }

    #[test]
    fn after_a_fall_one_run_and_the_known_bucket_tell_the_limit() {
        // 4 beyond the limit, emptied 60 slots into a run at 98/s: read at the middle of the
        // last slot, 98 - 4 / (59.5 / 98).
        let mut f = Fit::knowing(4.0);
        f.record(100.0, 1.0);
        f.record(98.0, 60.0 / 98.0);
        let limit = f.after_fall(98.0, Some(60.0 / 98.0)).expect("a limit");
        assert!(
            (limit - (98.0 - 4.0 / (59.5 / 98.0))).abs() < 1e-9,
            "{limit}"
        );
        assert_eq!(f.runs().count(), 1, "runs from before the fall are dropped");
        // A run too short to be exact is read high: 98 - 4 / (0.102 + 0.010).
        let short = f.after_fall(98.0, Some(0.102)).expect("a limit");
        assert!((short - (98.0 - 4.0 / 0.112)).abs() < 1e-9, "{short}");
        // Without a known bucket, or with a reading far off, nothing is told.
        assert_eq!(Fit::default().after_fall(98.0, Some(1.0)), None);
        assert_eq!(Fit::knowing(400.0).after_fall(98.0, Some(1.0)), None);
    }
}
