//! Taking a container apart: one ordered list of steps, and which of them each occasion
//! takes. Every place that ends a container — the monitor at the workload's exit or at
//! a failed start, a command finding a monitor dead, `rm`, `container prune`, a `run`
//! that never finished creating — goes through [`run`], so they cannot drift apart.
//!
//! The order is fixed: stop the sandbox, kill its cgroup, record the end, take the
//! network down (ports, record, leases), the volumes, the runtime files; tell whoever
//! waits; the network devices last (unregistering one waits for RCU grace periods).
//! [`plan`] is pure and unit-tested; [`Resources`] does the steps on the host; the
//! monitor adds the two only it can take (its sandbox, its clients).

mod resources;

pub(crate) use resources::named_by_others;
pub use resources::{release_anonymous, Resources};

use crate::sandbox::{ExitInfo, Metrics};

/// One step, in the order [`STEPS`] takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The backend's own teardown: the workload's cgroup, the VM and its virtiofsds.
    StopSandbox,
    /// Without a monitor: thaw, kill and remove the container's cgroup.
    KillCgroup,
    /// The record says how the container ended.
    RecordEnd,
    /// Published ports are withdrawn (the host's forwarding rules are rewritten).
    Unpublish,
    /// The record goes. A gate: if it cannot go, nothing after it is released.
    RemoveRecord,
    /// The addresses it leased on its networks are given back.
    ReleaseLeases,
    /// Its anonymous volumes that no other container names are removed.
    ReleaseVolumes,
    /// The runtime directory (control socket, VMM jail, sockets) is removed.
    RemoveRuntimeDir,
    /// Whoever waits hears of the end (the monitor's clients and its starter).
    Announce,
    /// Its host-side network devices (veth, TAP) are deleted.
    RemoveDevices,
}

/// Every step, in order.
pub const STEPS: [Step; 10] = [
    Step::StopSandbox,
    Step::KillCgroup,
    Step::RecordEnd,
    Step::Unpublish,
    Step::RemoveRecord,
    Step::ReleaseLeases,
    Step::ReleaseVolumes,
    Step::RemoveRuntimeDir,
    Step::Announce,
    Step::RemoveDevices,
];

/// Why a container is taken apart.
#[derive(Debug, Clone, PartialEq)]
pub enum Occasion {
    /// The monitor saw the workload exit.
    Exited {
        info: ExitInfo,
        metrics: Metrics,
        /// `--rm`: the container goes with its anonymous volumes.
        auto_remove: bool,
        /// It had published ports.
        published: bool,
    },
    /// The monitor could not start it. `sandbox`: the backend had started (a later
    /// step failed); `published`: its ports had been published.
    StartFailed {
        error: String,
        /// The exit code the starter should use (125/126/127).
        code: i32,
        sandbox: bool,
        published: bool,
    },
    /// A command found its monitor dead (killed, crashed).
    MonitorDead { auto_remove: bool, published: bool },
    /// `rm` of a stopped container; `volumes`: `rm -v`.
    Remove { volumes: bool },
    /// `container prune`: as `rm` without `-v`, as Docker's.
    Prune,
    /// `rm -f` of a container whose record cannot be read.
    Damaged,
    /// A `run`/`create` that died half-way: only if its record is still abandoned.
    Abandoned,
}

impl Occasion {
    /// Does this occasion take `step`?
    pub fn takes(&self, step: Step) -> bool {
        use Occasion::*;
        use Step::*;
        match self {
            Exited {
                auto_remove,
                published,
                ..
            } => match step {
                StopSandbox | RecordEnd | RemoveRuntimeDir | Announce | RemoveDevices => true,
                Unpublish => *published,
                RemoveRecord | ReleaseLeases | ReleaseVolumes => *auto_remove,
                KillCgroup => false,
            },
            StartFailed {
                sandbox, published, ..
            } => match step {
                StopSandbox => *sandbox,
                Unpublish => *published,
                RecordEnd | RemoveRuntimeDir | Announce | RemoveDevices => true,
                KillCgroup | RemoveRecord | ReleaseLeases | ReleaseVolumes => false,
            },
            MonitorDead {
                auto_remove,
                published,
            } => match step {
                KillCgroup | RemoveRuntimeDir | RemoveDevices => true,
                Unpublish => *published,
                RecordEnd => !*auto_remove,
                RemoveRecord | ReleaseLeases | ReleaseVolumes => *auto_remove,
                StopSandbox | Announce => false,
            },
            Remove { volumes } => match step {
                RemoveRecord | ReleaseLeases | RemoveRuntimeDir => true,
                ReleaseVolumes => *volumes,
                _ => false,
            },
            Prune => Remove { volumes: false }.takes(step),
            Damaged => matches!(step, KillCgroup | RemoveRecord | RemoveRuntimeDir),
            Abandoned => matches!(
                step,
                RemoveRecord | ReleaseLeases | ReleaseVolumes | RemoveRuntimeDir
            ),
        }
    }
}

/// The steps an occasion takes, in order.
pub fn plan(occasion: &Occasion) -> Vec<Step> {
    STEPS
        .iter()
        .copied()
        .filter(|s| occasion.takes(*s))
        .collect()
}

/// What takes the steps. [`Resources`] takes every step that needs only the state
/// tree; the monitor's implementation adds its sandbox and its clients.
pub trait Host {
    fn take(&mut self, step: Step, occasion: &Occasion) -> Result<(), String>;
}

/// Take an occasion's steps in order. A failed step is reported and the rest still
/// run — except a record that cannot be removed, after which nothing is released (a
/// record must never name what is gone). Returns the steps that failed.
pub fn run(host: &mut dyn Host, occasion: &Occasion) -> Vec<(Step, String)> {
    let mut failed = Vec::new();
    for step in plan(occasion) {
        if let Err(e) = host.take(step, occasion) {
            failed.push((step, e));
            if step == Step::RemoveRecord {
                break;
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use Step::*;

    fn exited(auto_remove: bool, published: bool) -> Occasion {
        Occasion::Exited {
            info: ExitInfo {
                code: 0,
                oom_killed: false,
            },
            metrics: Metrics::default(),
            auto_remove,
            published,
        }
    }

    /// Records the steps it is asked to take; fails the ones it is told to.
    struct Recorder {
        taken: Vec<Step>,
        fail: Vec<Step>,
    }

    impl Host for Recorder {
        fn take(&mut self, step: Step, _: &Occasion) -> Result<(), String> {
            self.taken.push(step);
            if self.fail.contains(&step) {
                Err(format!("{step:?} failed"))
            } else {
                Ok(())
            }
        }
    }

    fn recorder(fail: &[Step]) -> Recorder {
        Recorder {
            taken: Vec::new(),
            fail: fail.to_vec(),
        }
    }

    #[test]
    fn an_exit_stops_records_and_announces_before_devices_go() {
        assert_eq!(
            plan(&exited(false, false)),
            [
                StopSandbox,
                RecordEnd,
                RemoveRuntimeDir,
                Announce,
                RemoveDevices
            ]
        );
    }

    #[test]
    fn an_exit_with_rm_and_ports_releases_everything_in_order() {
        assert_eq!(
            plan(&exited(true, true)),
            [
                StopSandbox,
                RecordEnd,
                Unpublish,
                RemoveRecord,
                ReleaseLeases,
                ReleaseVolumes,
                RemoveRuntimeDir,
                Announce,
                RemoveDevices
            ]
        );
    }

    #[test]
    fn the_sandbox_is_always_stopped_before_the_record_says_exited() {
        for o in [
            exited(false, true),
            exited(true, false),
            Occasion::StartFailed {
                error: "x".into(),
                code: 125,
                sandbox: true,
                published: true,
            },
        ] {
            let p = plan(&o);
            let stop = p.iter().position(|s| *s == StopSandbox).unwrap();
            let rec = p.iter().position(|s| *s == RecordEnd).unwrap();
            assert!(stop < rec, "{o:?}: {p:?}");
        }
    }

    #[test]
    fn a_start_that_failed_before_the_sandbox_has_nothing_to_stop() {
        let o = Occasion::StartFailed {
            error: "no such image".into(),
            code: 125,
            sandbox: false,
            published: false,
        };
        assert_eq!(
            plan(&o),
            [RecordEnd, RemoveRuntimeDir, Announce, RemoveDevices]
        );
    }

    #[test]
    fn a_start_that_failed_publishing_withdraws_its_ports() {
        let o = Occasion::StartFailed {
            error: "port taken".into(),
            code: 125,
            sandbox: true,
            published: true,
        };
        assert_eq!(
            plan(&o),
            [
                StopSandbox,
                RecordEnd,
                Unpublish,
                RemoveRuntimeDir,
                Announce,
                RemoveDevices
            ]
        );
    }

    #[test]
    fn a_dead_monitors_container_is_killed_through_its_cgroup() {
        let p = plan(&Occasion::MonitorDead {
            auto_remove: false,
            published: true,
        });
        assert_eq!(
            p,
            [
                KillCgroup,
                RecordEnd,
                Unpublish,
                RemoveRuntimeDir,
                RemoveDevices
            ]
        );
        let p = plan(&Occasion::MonitorDead {
            auto_remove: true,
            published: false,
        });
        assert_eq!(
            p,
            [
                KillCgroup,
                RemoveRecord,
                ReleaseLeases,
                ReleaseVolumes,
                RemoveRuntimeDir,
                RemoveDevices
            ]
        );
    }

    #[test]
    fn prune_is_rm_without_v() {
        assert_eq!(
            plan(&Occasion::Prune),
            plan(&Occasion::Remove { volumes: false })
        );
        assert_eq!(
            plan(&Occasion::Remove { volumes: true }),
            [
                RemoveRecord,
                ReleaseLeases,
                ReleaseVolumes,
                RemoveRuntimeDir
            ]
        );
    }

    #[test]
    fn damaged_and_abandoned_records() {
        assert_eq!(
            plan(&Occasion::Damaged),
            [KillCgroup, RemoveRecord, RemoveRuntimeDir]
        );
        assert_eq!(
            plan(&Occasion::Abandoned),
            [
                RemoveRecord,
                ReleaseLeases,
                ReleaseVolumes,
                RemoveRuntimeDir
            ]
        );
    }

    #[test]
    fn every_plan_follows_the_one_order() {
        let all = [
            exited(true, true),
            exited(false, false),
            Occasion::StartFailed {
                error: String::new(),
                code: 125,
                sandbox: true,
                published: true,
            },
            Occasion::MonitorDead {
                auto_remove: true,
                published: true,
            },
            Occasion::Remove { volumes: true },
            Occasion::Prune,
            Occasion::Damaged,
            Occasion::Abandoned,
        ];
        for o in all {
            let idx: Vec<usize> = plan(&o)
                .iter()
                .map(|s| STEPS.iter().position(|x| x == s).unwrap())
                .collect();
            assert!(idx.windows(2).all(|w| w[0] < w[1]), "{o:?}");
        }
    }

    #[test]
    fn a_record_that_cannot_go_keeps_everything_it_names() {
        let mut h = recorder(&[RemoveRecord]);
        let failed = run(&mut h, &Occasion::Remove { volumes: true });
        assert_eq!(h.taken, [RemoveRecord]);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, RemoveRecord);
    }

    #[test]
    fn other_failures_are_reported_and_the_rest_still_runs() {
        let mut h = recorder(&[StopSandbox, Unpublish]);
        let failed = run(&mut h, &exited(true, true));
        assert_eq!(h.taken, plan(&exited(true, true)));
        assert_eq!(
            failed.iter().map(|f| f.0).collect::<Vec<_>>(),
            [StopSandbox, Unpublish]
        );
    }
}
