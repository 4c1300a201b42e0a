//! A sandbox that only pretends, for the monitor's unit tests: it records what it is
//! asked and ends when told to (or on the signals it is set to die of).

use crate::sandbox::{ExecProcess, ExitInfo, Sandbox, SandboxError, SandboxStats, TopRow};
use crate::spec::ProcessSpec;
use std::io::{Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Clones share their state: a test keeps one while the monitor owns another.
#[derive(Default, Clone)]
pub struct FakeSandbox {
    calls: Arc<Mutex<Vec<String>>>,
    exit: Arc<(Mutex<Option<ExitInfo>>, Condvar)>,
    /// Signals the workload dies of (128 + signal); any other is ignored, as by a
    /// workload that traps it.
    pub dies_on: Vec<i32>,
    /// `pause` fails with this.
    pub pause_fails: Option<String>,
}

impl FakeSandbox {
    pub fn dying_on(signals: &[i32]) -> FakeSandbox {
        FakeSandbox {
            dies_on: signals.to_vec(),
            ..Default::default()
        }
    }

    /// The workload ends with `code`.
    pub fn end(&self, code: i32) {
        let mut g = self.exit.0.lock().unwrap();
        if g.is_none() {
            *g = Some(ExitInfo {
                code,
                oom_killed: false,
            });
        }
        self.exit.1.notify_all();
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn log(&self, s: impl Into<String>) {
        self.calls.lock().unwrap().push(s.into());
    }
}

impl Sandbox for FakeSandbox {
    fn pid(&self) -> i32 {
        4242
    }

    fn wait(&self) -> ExitInfo {
        let mut g = self.exit.0.lock().unwrap();
        loop {
            if let Some(i) = *g {
                return i;
            }
            g = self
                .exit
                .1
                .wait_timeout(g, Duration::from_secs(30))
                .unwrap()
                .0;
        }
    }

    fn signal(&self, sig: i32) -> Result<(), SandboxError> {
        self.log(format!("signal {sig}"));
        if self.dies_on.contains(&sig) {
            self.end(128 + sig);
        }
        Ok(())
    }

    fn kill(&self) -> Result<(), SandboxError> {
        self.log("kill");
        self.end(137);
        Ok(())
    }

    fn pause(&self) -> Result<(), SandboxError> {
        self.log("pause");
        match &self.pause_fails {
            Some(e) => Err(SandboxError::Other(e.clone())),
            None => Ok(()),
        }
    }

    fn resume(&self) -> Result<(), SandboxError> {
        self.log("resume");
        Ok(())
    }

    fn resize(&self, rows: u16, cols: u16) {
        self.log(format!("resize {rows}x{cols}"));
    }

    fn exec(&self, p: &ProcessSpec) -> Result<Box<dyn ExecProcess>, SandboxError> {
        self.log(format!("exec {}", p.args.join(" ")));
        Err(SandboxError::NotFound(
            p.args.first().cloned().unwrap_or_default(),
        ))
    }

    fn copy_out(&self, path: &str, out: &mut (dyn Write + Send)) -> Result<(), SandboxError> {
        self.log(format!("copy_out {path}"));
        out.write_all(b"tar bytes")?;
        Ok(())
    }

    fn copy_in(&self, path: &str, input: &mut (dyn Read + Send)) -> Result<(), SandboxError> {
        let mut v = Vec::new();
        input.read_to_end(&mut v)?;
        self.log(format!("copy_in {path} {}", v.len()));
        Ok(())
    }

    fn top(&self) -> Result<Vec<TopRow>, SandboxError> {
        Ok(vec![TopRow {
            uid: 0,
            pid: 1,
            ppid: 0,
            stime: "00:00".into(),
            time: "00:00:00".into(),
            cmd: "sleep 60".into(),
        }])
    }

    fn stats(&self) -> Result<SandboxStats, SandboxError> {
        Ok(SandboxStats {
            pids: 1,
            ..Default::default()
        })
    }

    fn cleanup(&self) {
        self.log("cleanup");
    }
}
