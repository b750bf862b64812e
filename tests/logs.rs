//! What the job logs, captured from a run of the library (its own binary: the log subscriber
//! is process-wide, so no other test may share it).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use velt_group_sync::emulator::{Emulator, EmulatorConfig};

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
/// level, in words an operator can check against Velt's documentation.
#[tokio::test(start_paused = true)]
async fn the_inferred_quota_is_said_once_at_info_level() {
    let logs = Logs::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(logs.clone())
        .with_ansi(false)
        .init();
    let emu = Emulator::in_process(EmulatorConfig {
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
}
