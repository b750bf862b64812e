//! What the job logs, captured from a run of the library (its own binary: the log subscriber
//! is process-wide, so no other test may share it).

#[path = "it/common/mod.rs"]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use velt_group_sync::emulator::EmulatorConfig;

/// Every line the subscriber writes, kept.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// A per-minute quota is inferred from the first throttled window and said once, at info
/// level, in words an operator can check against Velt's documentation. In-flight slots raised
/// several times over a run are said once too, at its end. (One test: the subscriber can be
/// installed once per process.)
#[tokio::test(start_paused = true)]
async fn the_inferred_quota_and_the_raised_concurrency_are_said_once_at_info_level() {
    let logs = Logs::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(logs.clone())
        .with_ansi(false)
        .init();
    let emu = in_process_emulator(EmulatorConfig {
        window_limit: Some((20, Duration::from_secs(60))),
        omit_retry_after: true,
        ..EmulatorConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    write_groups(dir.path(), 1, 70);
    let run = sync_in_process(&emu, dir.path(), &["--chunk-size", "1"]).await;
    assert_eq!(run.result.unwrap(), 0);
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let said: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("quota_inferred"))
        .collect();
    assert_eq!(said.len(), 1, "{text}");
    assert!(said[0].contains(" INFO "), "{}", said[0]);
    assert!(
        said[0].contains("the server allows about 20 requests a minute"),
        "{}",
        said[0]
    );

    // Windows met at a bad phase (a wall-clock minute that ends 1.5 s into the run, each
    // request counted 20-60 ms after it leaves): the first throttle sees 50 accepted in a
    // minute, but what is said, once, is the allowance the windows then confirm.
    use velt_group_sync::emulator::WindowShape;
    for shape in [
        WindowShape::Aligned(Duration::from_millis(58_500)),
        WindowShape::Anchored,
        WindowShape::Sliding,
        WindowShape::Bucket,
    ] {
        let before = logs.0.lock().unwrap().len();
        let emu = in_process_emulator(EmulatorConfig {
            window_limit: Some((30, Duration::from_secs(60))),
            window_shape: shape,
            count_delay: (Duration::from_millis(20), Duration::from_millis(60)),
            seed: Some(7),
            omit_retry_after: true,
            ..EmulatorConfig::default()
        });
        write_groups(dir.path(), 1, 130);
        let run = sync_in_process(&emu, dir.path(), &["--chunk-size", "1"]).await;
        assert_eq!(run.result.unwrap(), 0, "{shape:?}");
        let text = String::from_utf8_lossy(&logs.0.lock().unwrap()[before..]).into_owned();
        let said: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("quota_inferred"))
            .collect();
        assert_eq!(said.len(), 1, "{shape:?}: {text}");
        let n: f64 = said[0]
            .split("allows about ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("a number");
        assert!((27.0..=33.0).contains(&n), "{shape:?}: {}", said[0]);
    }

    // Refusals rolled up: one line per distinct reason, its count, five examples and a hint,
    // whatever the number of failed rows.
    let before = logs.0.lock().unwrap().len();
    let strict = in_process_emulator(EmulatorConfig {
        require_org_users: true,
        ..EmulatorConfig::default()
    });
    write_groups(dir.path(), 3, 40);
    let run = sync_in_process(&strict, dir.path(), &[]).await;
    assert_eq!(run.result.unwrap(), 1);
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()[before..]).into_owned();
    let rolled: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("event=\"refusals\""))
        .collect();
    assert_eq!(rolled.len(), 1, "{text}");
    let line = rolled[0];
    assert!(line.contains(" WARN "), "{line}");
    assert!(line.contains("count=120"), "{line}");
    assert!(
        line.contains("User is not part of the organization."),
        "{line}"
    );
    assert!(line.contains("--provision-users"), "{line}");
    assert!(
        line.contains("user-0000, user-0001, user-0002, user-0003, user-0004"),
        "{line}"
    );

    // 20 requests/s at 20-400 ms need more than the one slot the run starts with; the slots
    // grow step by step as the latency average moves, and the log says so once.
    let slow = in_process_emulator(EmulatorConfig {
        latency: (Duration::from_millis(20), Duration::from_millis(400)),
        ..EmulatorConfig::default()
    });
    write_groups(dir.path(), 1, 80);
    let args = ["--chunk-size", "1", "--rate", "20", "--concurrency", "1"];
    let run = sync_in_process(&slow, dir.path(), &args).await;
    assert_eq!(run.result.unwrap(), 0);
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    let raised: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("concurrency_raised"))
        .collect();
    assert_eq!(raised.len(), 1, "{text}");
    assert!(
        raised[0].contains(" INFO ") && raised[0].contains("from=1"),
        "{}",
        raised[0]
    );
}
