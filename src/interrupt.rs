//! Interruption of a run: the first SIGINT/SIGTERM asks for a graceful stop (no new requests,
//! in-flight ones may finish within `--grace`), the second for an abort. The library takes an
//! [`Interrupt`] as an argument, so tests interrupt a run without sending signals; `run` wires
//! the real signals to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio_util::sync::CancellationToken;

use crate::error::Error;

/// The two stop levels of a run and the exit code of the signal that asked first.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    /// Cancelled by the first signal: send nothing new.
    pub stop: CancellationToken,
    /// Cancelled by the second signal: stop at once.
    pub abort: CancellationToken,
    code: Arc<AtomicU8>,
}

impl Interrupt {
    pub fn new() -> Interrupt {
        Interrupt::default()
    }

    /// One signal, whose exit code is `code` (130 for SIGINT, 143 for SIGTERM): the first
    /// stops the run gracefully, the next aborts it.
    pub fn signal(&self, code: u8) {
        if self.stop.is_cancelled() {
            self.abort.cancel();
        } else {
            let _ = self
                .code
                .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
            self.stop.cancel();
        }
    }

    /// The exit code of the first signal, once there was one.
    pub fn code(&self) -> Option<u8> {
        match self.code.load(Ordering::Acquire) {
            0 => None,
            c => Some(c),
        }
    }

    /// Routes the process's SIGINT and SIGTERM here from now on: counted, not fatal.
    pub fn watch_signals(&self) -> Result<(), Error> {
        use tokio::signal::unix::{SignalKind, signal};
        let setup = |kind| {
            signal(kind).map_err(|e| Error::Runtime(format!("cannot install signal handlers: {e}")))
        };
        let mut int = setup(SignalKind::interrupt())?;
        let mut term = setup(SignalKind::terminate())?;
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let code = tokio::select! {
                    Some(()) = int.recv() => crate::error::exit::SIGINT,
                    Some(()) = term.recv() => crate::error::exit::SIGTERM,
                    else => return,
                };
                me.signal(code);
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_stops_the_second_aborts_and_the_first_code_stays() {
        let i = Interrupt::new();
        assert_eq!(i.code(), None);
        i.signal(143);
        assert!(i.stop.is_cancelled() && !i.abort.is_cancelled());
        i.signal(130);
        assert!(i.abort.is_cancelled());
        assert_eq!(i.code(), Some(143));
    }
}
