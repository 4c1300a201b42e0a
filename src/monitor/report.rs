//! The ready pipe: how the monitor tells the process that started it how the start
//! goes ([`StartReport`] lines), until the start is over and the pipe is closed.

use super::protocol::{self, StartReport};
use crate::phase::Phase;
use std::fs::File;
use std::sync::{Arc, Mutex};

/// The write end of the ready pipe, shared with the trace callback (phases arrive from
/// the backend's threads). Closed after the final report.
#[derive(Clone, Default)]
pub(crate) struct Reporter(Arc<Mutex<Option<File>>>);

impl Reporter {
    pub fn new(pipe: Option<File>) -> Reporter {
        Reporter(Arc::new(Mutex::new(pipe)))
    }

    fn send(&self, r: &StartReport, last: bool) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = g.as_mut() {
            let _ = protocol::write_json_line(f, r);
        }
        if last {
            *g = None;
        }
    }

    pub fn listening(&self) {
        self.send(&StartReport::Listening, false);
    }

    pub fn phase(&self, phase: Phase, ms: f64) {
        self.send(&StartReport::Phase { phase, ms }, false);
    }

    pub fn started(&self) {
        self.send(&StartReport::Started, true);
    }

    pub fn failed(&self, error: String, code: i32) {
        self.send(&StartReport::Failed { error, code }, true);
    }

    /// A second descriptor for the pipe (to notice when its reader goes away).
    pub fn pipe(&self) -> Option<File> {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.as_ref().and_then(|f| f.try_clone().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    #[test]
    fn reports_are_lines_the_starter_reads_back_and_the_pipe_closes_after_the_last() {
        let (r, w) = crate::init::pipe().unwrap();
        let rep = Reporter::new(Some(w));
        rep.listening();
        rep.phase(Phase::Clone, 1.25);
        rep.failed("no such file".into(), 127);
        rep.started(); // after the last: goes nowhere
        let lines: Vec<StartReport> = BufReader::new(r)
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect();
        assert_eq!(
            lines,
            [
                StartReport::Listening,
                StartReport::Phase {
                    phase: Phase::Clone,
                    ms: 1.25
                },
                StartReport::Failed {
                    error: "no such file".into(),
                    code: 127
                }
            ]
        );
    }
}
