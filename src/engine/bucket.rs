//! Reading a server's token bucket off its throttles: how long each run at a known rate took
//! to be throttled gives the bucket's refill rate (the limit) and size.

/// The limit of a token bucket that fits the runs: one that refills at `L` a second and holds
/// `c` is emptied by a rate `r` after `c / (r - L)` seconds, so `r = L + c * (1 / t)`, a line
/// whose intercept is the limit. `None` with fewer than two runs of different lengths, or
/// when the runs do not look like a bucket (a negative size, a limit above a rate that
/// tripped), as a server that limits otherwise would give.
pub(super) fn fit(runs: &std::collections::VecDeque<(f64, f64)>) -> Option<(f64, f64)> {
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
        let runs: std::collections::VecDeque<(f64, f64)> = [150.0, 120.0, 104.0]
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
}
