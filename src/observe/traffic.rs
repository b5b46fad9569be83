//! traffic: `--traffic`, the reference's per-frame symbols on stdout, a debugging aid:
//! `}` a frame from the client, `{` a read from the target, `>` / `<` a write to the target /
//! client that completed, `.>` / `<.` one that did not (the rest waits for the peer). The
//! writer thread prints them; at most [`MAX_QUEUED`] wait, more are dropped.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::writer::{self, Job};
use super::{Direction, Observer, Session};

/// Symbols waiting for stdout, for all sessions together; past it they are dropped (a stdout
/// nobody reads must not grow our memory).
pub const MAX_QUEUED: usize = 65_536;

pub(super) static QUEUED: AtomicUsize = AtomicUsize::new(0);

/// Printed when a session opens, as the reference does.
pub const LEGEND: &str = "
Traffic Legend:
    }  - Client receive
    }. - Client receive partial
    {  - Target receive

    >  - Target send
    >. - Target send partial
    <  - Client send
    <. - Client send partial
";

/// Prints one session's traffic symbols.
#[derive(Debug, Default)]
pub struct Traffic;

fn print(symbols: &'static str) {
    if QUEUED.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
        QUEUED.fetch_sub(1, Ordering::Relaxed);
        return;
    }
    if !writer::send(Job::Traffic(symbols)) {
        QUEUED.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Observer for Traffic {
    fn open(&mut self, _session: &Session<'_>) {
        print(LEGEND);
    }

    fn wants_bytes(&self) -> bool {
        true
    }

    fn bytes(&mut self, direction: Direction, _data: &[u8]) {
        print(match direction {
            Direction::ClientToTarget => "}",
            Direction::TargetToClient => "{",
        });
    }

    fn sent(&mut self, direction: Direction, complete: bool) {
        print(match (direction, complete) {
            (Direction::ClientToTarget, true) => ">",
            (Direction::ClientToTarget, false) => ".>",
            (Direction::TargetToClient, true) => "<",
            (Direction::TargetToClient, false) => "<.",
        });
    }
}
