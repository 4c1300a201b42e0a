//! Building and running one microVM: the boot recipe, step by step, and the handle the
//! monitor drives (wait, pause, resume, power off).

use super::boot::{self, cmdline::MmioSlot, EntryMode};
use super::bus::Bus;
use super::devices::boot_timer::BootTimer;
use super::devices::i8042::I8042;
use super::devices::serial::SerialDevice;
use super::devices::virtio::block::{Block, BlockHandler};
use super::devices::virtio::fs::{Fs, FsHandler};
use super::devices::virtio::mmio::MmioTransport;
use super::devices::virtio::net::{Net, NetHandler};
use super::devices::virtio::vsock::{Muxer, Vsock, VsockHandler};
use super::devices::virtio::{Interrupt, VirtioDevice};
use super::event_loop::{EventLoop, Subscriber};
use super::exit::Action;
use super::layout::*;
use super::memory::{self, GuestMemoryMmap};
use super::vcpu::{self, Control, VcpuEnd};
use super::VmmError;
use kvm_bindings::{kvm_pit_config, Msrs, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Cap, IoEventAddress, Kvm, VmFd};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use vmm_sys_util::eventfd::EventFd;

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone)]
pub struct VmDisk {
    pub path: PathBuf,
    pub read_only: bool,
    /// Serial the guest reads with GET_ID (max 20 bytes).
    pub id: String,
}

/// A directory shared with the guest over virtio-fs: a connection to its vhost-user
/// back end (virtiofsd), and the tag the guest mounts it by.
#[derive(Debug)]
pub struct VmShare {
    pub tag: String,
    pub stream: std::os::unix::net::UnixStream,
}

#[derive(Debug)]
pub struct VmNet {
    /// The TAP, opened (and attached to a bridge) by the caller.
    pub tap: std::fs::File,
    pub mac: [u8; 6],
}

#[derive(Debug)]
pub struct VmVsock {
    pub cid: u64,
    /// Unix socket path prefix: guest port P connects to `<base>_P`; host processes
    /// connect to `<base>` with `CONNECT P`. Bound when the VM is built.
    pub uds_base: PathBuf,
    /// Where guest-initiated connections go once the VM runs, if not `uds_base`
    /// (a jailed VMM sees the jail's directory as `/`).
    pub connect_base: Option<PathBuf>,
}

/// What each kind of thread confines itself with as it starts (seccomp-BPF programs).
#[derive(Default, Clone, Debug)]
pub struct ThreadFilters {
    pub vcpu: Option<Arc<Vec<u8>>>,
    pub devices: Option<Arc<Vec<u8>>>,
}

/// Called once the VM is built and before any of its threads runs: the jailed VMM
/// enters its jail here, and says how its threads are to confine themselves.
pub type BeforeRun = Box<dyn FnOnce() -> Result<ThreadFilters, VmmError>>;

use crate::phase::Phase;
pub use crate::phase::Trace;

pub struct VmConfig {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// Appended to the base command line.
    pub cmdline: String,
    pub mem_bytes: u64,
    pub vcpus: u8,
    pub disks: Vec<VmDisk>,
    /// virtio-fs devices (guest RAM is then a memfd the back ends map).
    pub shares: Vec<VmShare>,
    pub net: Option<VmNet>,
    pub vsock: Option<VmVsock>,
    /// Where the guest's serial console goes.
    pub console: Box<dyn Write + Send>,
    /// Pass `quiet` to the kernel.
    pub quiet: bool,
    pub trace: Option<Trace>,
    pub before_run: Option<BeforeRun>,
    /// /dev/kvm already opened by the caller (a VMM in a cgroup that allows no
    /// devices cannot open it); None: open it here.
    pub kvm: Option<std::fs::File>,
}

impl std::fmt::Debug for VmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmConfig").finish_non_exhaustive()
    }
}

/// When things happened during boot.
#[derive(Clone, Debug)]
pub struct BootTimes {
    /// Just before KVM_CREATE_VM.
    pub start: Instant,
    /// Host-side set-up steps and their durations.
    pub steps: Vec<(Phase, Duration)>,
    /// When the first KVM_RUN was issued.
    pub first_run: Instant,
    /// When the guest agent wrote the boot-timer port.
    pub agent: Arc<Mutex<Option<Instant>>>,
}

impl BootTimes {
    /// Host-side set-up: VM creation to the first KVM_RUN.
    pub fn setup(&self) -> Duration {
        self.first_run - self.start
    }
    /// First KVM_RUN to the agent's boot-timer write, if it happened.
    pub fn guest_boot(&self) -> Option<Duration> {
        self.agent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map(|t| t.saturating_duration_since(self.first_run))
    }
}

/// How a microVM ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum VmEnd {
    /// The guest shut down or rebooted.
    Shutdown,
    /// Powered off by the VMM.
    Stopped,
    /// KVM reported an internal error (emulation failure on a PVM host).
    InternalError {
        suberror: u32,
    },
    FailEntry(u64),
    Crashed(String),
}

#[derive(Debug)]
pub struct Vm {
    // Field order matters for drop: threads and devices go before the VM fd and memory.
    ctl: Arc<Control>,
    threads: Vec<JoinHandle<()>>,
    ended: Mutex<Receiver<VcpuEnd>>,
    end: Mutex<Option<VmEnd>>,
    event_loop: EventLoop,
    _pio: Arc<Bus>,
    _mmio: Arc<Bus>,
    _vm: VmFd,
    _kvm: Kvm,
    _mem: Arc<GuestMemoryMmap>,
    pub boot: BootTimes,
}

struct Step<'a> {
    trace: &'a Option<Trace>,
    steps: Vec<(Phase, Duration)>,
    t: Instant,
}

impl Step<'_> {
    fn done(&mut self, phase: Phase) {
        let d = self.t.elapsed();
        if let Some(f) = self.trace {
            f(phase, d);
        }
        self.steps.push((phase, d));
        self.t = Instant::now();
    }
}

const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
];

/// The virtio devices being placed on the MMIO bus: each gets the next slot (address
/// and interrupt line) and its event handler.
struct DeviceSet<'a> {
    vm: &'a VmFd,
    mem: &'a Arc<GuestMemoryMmap>,
    mmio: Bus,
    subscribers: Vec<Subscriber>,
    slots: Vec<MmioSlot>,
}

impl DeviceSet<'_> {
    /// Place `dev`; returns its queues' kick eventfds.
    fn place<D: VirtioDevice + 'static>(
        &mut self,
        dev: Arc<Mutex<D>>,
    ) -> Result<Vec<Arc<EventFd>>, VmmError> {
        let n = self.slots.len() as u64;
        let slot = MmioSlot {
            base: MMIO_START + n * MMIO_SLOT,
            irq: VIRTIO_IRQ_BASE + n as u32,
        };
        if slot.irq > IRQ_MAX {
            return Err(VmmError::Config("too many devices".into()));
        }
        let evts = add_virtio(self.vm, self.mem, &mut self.mmio, slot, dev)?;
        self.slots.push(slot);
        Ok(evts)
    }

    fn disks(&mut self, disks: &[VmDisk]) -> Result<(), VmmError> {
        for d in disks {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(!d.read_only)
                .open(&d.path)
                .map_err(|e| VmmError::Device(format!("disk {}: {e}", d.path.display())))?;
            let dev = Arc::new(Mutex::new(Block::new(f, d.read_only, &d.id)));
            let evts = self.place(dev.clone())?;
            self.subscribers.push(Box::new(BlockHandler {
                dev,
                queue_evt: evts[0].clone(),
            }));
        }
        Ok(())
    }

    fn shares(&mut self, shares: Vec<VmShare>) -> Result<(), VmmError> {
        for sh in shares {
            let fs = Fs::connect(sh.stream, &sh.tag, self.mem)
                .map_err(|e| VmmError::Device(format!("virtio-fs {}: {e}", sh.tag)))?;
            let dev = Arc::new(Mutex::new(fs));
            let evts = self.place(dev.clone())?;
            dev.lock()
                .unwrap_or_else(|e| e.into_inner())
                .set_kicks(evts);
            self.subscribers.push(Box::new(FsHandler::new(dev)));
        }
        Ok(())
    }

    fn net(&mut self, n: &VmNet) -> Result<(), VmmError> {
        let tap = n
            .tap
            .try_clone()
            .map_err(|e| VmmError::Device(format!("tap: {e}")))?;
        let dev = Net::new(tap, n.mac);
        let tap_fd = dev.tap_fd();
        let dev = Arc::new(Mutex::new(dev));
        let evts = self.place(dev.clone())?;
        self.subscribers.push(Box::new(NetHandler {
            dev,
            queue_evts: evts,
            tap_fd,
        }));
        Ok(())
    }

    fn vsock(&mut self, v: &VmVsock) -> Result<(), VmmError> {
        let mut muxer = Muxer::new(v.cid, v.uds_base.clone(), true)
            .map_err(|e| VmmError::Device(format!("vsock socket {}: {e}", v.uds_base.display())))?;
        if let Some(b) = &v.connect_base {
            muxer.connect_to(b.clone());
        }
        let dev = Arc::new(Mutex::new(Vsock::new(v.cid, muxer)));
        let evts = self.place(dev.clone())?;
        self.subscribers
            .push(Box::new(VsockHandler::new(dev, evts)));
        Ok(())
    }
}

/// Guest RAM: a sealed memfd when virtiofsd must map it too, anonymous otherwise.
fn guest_memory(vm: &VmFd, cfg: &VmConfig) -> Result<Arc<GuestMemoryMmap>, VmmError> {
    let mem = Arc::new(if cfg.shares.is_empty() {
        memory::create(cfg.mem_bytes)?
    } else {
        memory::create_shared(cfg.mem_bytes)?
    });
    memory::register(vm, &mem)?;
    Ok(mem)
}

/// The kernel and, if any, the initramfs into guest memory.
fn load_guest(
    mem: &GuestMemoryMmap,
    cfg: &VmConfig,
) -> Result<(boot::KernelEntry, Option<boot::params::Initrd>), VmmError> {
    let entry = boot::loader::load_kernel(mem, &cfg.kernel)?;
    let initrd = match &cfg.initrd {
        Some(p) => {
            let data = std::fs::read(p)
                .map_err(|e| VmmError::Kernel(format!("initramfs {}: {e}", p.display())))?;
            let (addr, size) = boot::loader::load_initrd(mem, &data, entry.kernel_end)?;
            Some(boot::params::Initrd { addr, size })
        }
        None => None,
    };
    Ok((entry, initrd))
}

/// What the boot parameters need of the configuration.
struct BootArgs {
    cmdline: String,
    quiet: bool,
    vcpus: u8,
}

/// The command line (naming every virtio-mmio device), the boot protocol's parameters,
/// the MP table and the page tables. Returns the zero page's address (0 for PVH).
fn write_boot_params(
    mem: &GuestMemoryMmap,
    cfg: &BootArgs,
    entry: &boot::KernelEntry,
    initrd: Option<boot::params::Initrd>,
    slots: &[MmioSlot],
) -> Result<u64, VmmError> {
    let cmdline = boot::cmdline::build(&cfg.cmdline, slots, cfg.quiet)?;
    linux_loader::loader::load_cmdline(mem, vm_memory::GuestAddress(CMDLINE_START), &cmdline)
        .map_err(|e| VmmError::Cmdline(e.to_string()))?;
    let cmdline_len = cmdline
        .as_cstring()
        .map_err(|e| VmmError::Cmdline(e.to_string()))?
        .as_bytes_with_nul()
        .len();
    let zero_page = match entry.mode {
        EntryMode::Pvh => {
            boot::params::write_pvh(mem, initrd)?;
            0
        }
        EntryMode::Linux64 => {
            boot::params::write_zero_page(mem, cmdline_len, initrd, entry.setup_header)?
        }
    };
    boot::mptable::write(mem, cfg.vcpus)?;
    boot::regs::write_tables(mem, entry.mode)?;
    Ok(zero_page)
}

/// Every vCPU, with CPUID, MSRs and the registers of the kernel's entry point.
fn create_vcpus(
    kvm: &Kvm,
    vm: &VmFd,
    count: u8,
    entry: &boot::KernelEntry,
    zero_page: u64,
) -> Result<Vec<kvm_ioctls::VcpuFd>, VmmError> {
    let supported = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(VmmError::kvm("KVM_GET_SUPPORTED_CPUID"))?;
    let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
    let msr_entries = boot::msrs::boot_entries();
    let msrs =
        Msrs::from_entries(&msr_entries).map_err(|e| VmmError::Config(format!("MSRs: {e:?}")))?;
    let mut vcpus = Vec::new();
    for id in 0..count {
        let v = vm
            .create_vcpu(u64::from(id))
            .map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
        let cpuid = boot::cpuid::for_vcpu(&supported, id, count, tsc_deadline);
        v.set_cpuid2(&cpuid)
            .map_err(VmmError::kvm("KVM_SET_CPUID2"))?;
        v.set_msrs(&msrs).map_err(VmmError::kvm("KVM_SET_MSRS"))?;
        boot::regs::setup(&v, entry.entry, entry.mode, zero_page, id == 0)?;
        vcpus.push(v);
    }
    Ok(vcpus)
}

impl Vm {
    /// The boot recipe: kvm -> vm -> memory -> kernel -> devices -> boot params ->
    /// vcpus -> jail -> run.
    pub fn start(mut cfg: VmConfig) -> Result<Vm, VmmError> {
        if cfg.vcpus == 0 || cfg.vcpus > boot::mptable::MAX_CPUS {
            return Err(VmmError::Config(format!("{} vCPUs", cfg.vcpus)));
        }
        if cfg.mem_bytes < (32 << 20) {
            return Err(VmmError::Config("at least 32 MiB of guest memory".into()));
        }
        let start = Instant::now();
        let mut step = Step {
            trace: &cfg.trace,
            steps: Vec::new(),
            t: start,
        };

        let (kvm, vm) = create_vm(cfg.kvm.take())?;
        step.done(Phase::CreateVm);

        let mem = guest_memory(&vm, &cfg)?;
        step.done(Phase::GuestMemory);

        let (entry, initrd) = load_guest(&mem, &cfg)?;
        step.done(Phase::KernelLoad);

        let mut pio = Bus::new();
        let timer = BootTimer::default();
        let agent_time = timer.at.clone();
        add_legacy_devices(&vm, &mut pio, cfg.console, timer)?;
        let mut devices = DeviceSet {
            vm: &vm,
            mem: &mem,
            mmio: Bus::new(),
            subscribers: Vec::new(),
            slots: Vec::new(),
        };
        devices.disks(&cfg.disks)?;
        devices.shares(std::mem::take(&mut cfg.shares))?;
        if let Some(n) = &cfg.net {
            devices.net(n)?;
        }
        if let Some(v) = &cfg.vsock {
            devices.vsock(v)?;
        }
        let DeviceSet {
            mmio,
            subscribers,
            slots,
            ..
        } = devices;
        step.done(Phase::Devices);

        let args = BootArgs {
            cmdline: std::mem::take(&mut cfg.cmdline),
            quiet: cfg.quiet,
            vcpus: cfg.vcpus,
        };
        let zero_page = write_boot_params(&mem, &args, &entry, initrd, &slots)?;
        step.done(Phase::BootParams);

        let vcpus = create_vcpus(&kvm, &vm, cfg.vcpus, &entry, zero_page)?;
        step.done(Phase::Vcpus);

        let filters = match cfg.before_run.take() {
            Some(f) => {
                let f = f()?;
                step.done(Phase::Jail);
                f
            }
            None => ThreadFilters::default(),
        };
        let event_loop = EventLoop::start(subscribers, filters.devices.clone())?;
        let pio = Arc::new(pio);
        let mmio = Arc::new(mmio);
        let ctl = Control::new();
        let (tx, rx) = channel();
        let first_run = Instant::now();
        let mut threads = Vec::new();
        for (id, v) in vcpus.into_iter().enumerate() {
            threads.push(vcpu::spawn(
                id as u8,
                v,
                pio.clone(),
                mmio.clone(),
                ctl.clone(),
                tx.clone(),
                filters.vcpu.clone(),
            )?);
        }
        step.done(Phase::StartVcpus);
        Ok(Vm {
            ctl,
            threads,
            ended: Mutex::new(rx),
            end: Mutex::new(None),
            event_loop,
            _pio: pio,
            _mmio: mmio,
            _vm: vm,
            _kvm: kvm,
            _mem: mem,
            boot: BootTimes {
                start,
                steps: step.steps,
                first_run,
                agent: agent_time,
            },
        })
    }

    /// Block until the guest ends (or `timeout`); then every vCPU is stopped. Once
    /// ended, every call returns the same end at once.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<VmEnd> {
        if let Some(e) = self.end.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Some(e);
        }
        let rx = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = self.end.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Some(e);
        }
        let end = match timeout {
            Some(t) => rx.recv_timeout(t).ok()?,
            None => rx.recv().ok()?,
        };
        let stopped_by_us = self
            .ctl
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stop;
        self.halt_all();
        let e = match end.action {
            _ if stopped_by_us => VmEnd::Stopped,
            Action::Shutdown => VmEnd::Shutdown,
            Action::InternalError => VmEnd::InternalError {
                suberror: end.suberror.unwrap_or(0),
            },
            Action::FailEntry(r) => VmEnd::FailEntry(r),
            Action::Unexpected(s) => VmEnd::Crashed(s),
            Action::Continue => VmEnd::Crashed("vCPU returned".into()),
        };
        *self.end.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.clone());
        Some(e)
    }

    fn halt_all(&self) {
        {
            let mut g = self.ctl.state.lock().unwrap_or_else(|e| e.into_inner());
            g.stop = true;
            self.ctl.cv.notify_all();
        }
        for t in &self.threads {
            vcpu::kick(t);
        }
        self.event_loop.stop();
    }

    /// Power the VM off now.
    pub fn power_off(&self) {
        {
            let mut g = self.ctl.state.lock().unwrap_or_else(|e| e.into_inner());
            g.stop = true;
            self.ctl.cv.notify_all();
        }
        for t in &self.threads {
            vcpu::kick(t);
        }
    }

    /// Stop every vCPU; returns when all are parked.
    pub fn pause(&self) -> Result<(), VmmError> {
        let mut g = self.ctl.state.lock().unwrap_or_else(|e| e.into_inner());
        g.paused = true;
        drop(g);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            for t in &self.threads {
                vcpu::kick(t);
            }
            let g = self.ctl.state.lock().unwrap_or_else(|e| e.into_inner());
            if g.parked >= self.threads.len() || g.stop {
                return Ok(());
            }
            let (g, _) = self
                .ctl
                .cv
                .wait_timeout(g, Duration::from_millis(20))
                .unwrap_or_else(|e| e.into_inner());
            if g.parked >= self.threads.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(VmmError::Device("the vCPUs did not stop".into()));
            }
        }
    }

    pub fn resume(&self) {
        let mut g = self.ctl.state.lock().unwrap_or_else(|e| e.into_inner());
        g.paused = false;
        self.ctl.cv.notify_all();
    }

    /// Where guest RAM is mapped in this process: (start, end) addresses.
    pub fn memory_ranges(&self) -> Vec<(u64, u64)> {
        use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
        self._mem
            .iter()
            .map(|r| (r.as_ptr() as u64, r.as_ptr() as u64 + r.len()))
            .collect()
    }

    /// Bytes of guest RAM resident on the host (from /proc/self/smaps).
    pub fn guest_resident(&self) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        resident_in(&smaps, &self.memory_ranges())
    }

    pub fn vcpu_count(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.halt_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Resident bytes of the mappings inside `ranges`, from a process's smaps.
pub fn resident_in(smaps: &str, ranges: &[(u64, u64)]) -> u64 {
    let mut total = 0;
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                    inside = ranges.iter().any(|(s, e)| a >= *s && b <= *e);
                    continue;
                }
            }
        }
        if inside {
            if let Some(v) = line.strip_prefix("Rss:") {
                total += v
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap_or(0)
                    * 1024;
            }
        }
    }
    total
}

fn create_vm(dev: Option<std::fs::File>) -> Result<(Kvm, VmFd), VmmError> {
    let kvm = match dev {
        Some(f) => {
            use std::os::fd::{FromRawFd, IntoRawFd};
            // SAFETY: the descriptor is an open /dev/kvm whose ownership the File hands
            // over; nothing else closes it.
            unsafe { Kvm::from_raw_fd(f.into_raw_fd()) }
        }
        None => Kvm::new().map_err(|e| VmmError::NoKvm(e.to_string()))?,
    };
    for (cap, name) in REQUIRED_CAPS {
        if !kvm.check_extension(*cap) {
            return Err(VmmError::MissingCap(name));
        }
    }
    let vm = kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?;
    vm.set_tss_address(KVM_TSS_ADDRESS)
        .map_err(VmmError::kvm("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip()
        .map_err(VmmError::kvm("KVM_CREATE_IRQCHIP"))?;
    vm.create_pit2(kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    })
    .map_err(VmmError::kvm("KVM_CREATE_PIT2"))?;
    Ok((kvm, vm))
}

fn add_legacy_devices(
    vm: &VmFd,
    pio: &mut Bus,
    console: Box<dyn Write + Send>,
    timer: BootTimer,
) -> Result<(), VmmError> {
    let irq = EventFd::new(libc::EFD_NONBLOCK)?;
    vm.register_irqfd(&irq, SERIAL_IRQ)
        .map_err(VmmError::kvm("KVM_IRQFD (serial)"))?;
    let serial = SerialDevice::new(irq, console);
    pio.insert(u64::from(SERIAL_PORT), 8, Arc::new(Mutex::new(serial)))
        .map_err(VmmError::Device)?;
    pio.insert(u64::from(I8042_PORT), 5, Arc::new(Mutex::new(I8042)))
        .map_err(VmmError::Device)?;
    pio.insert(u64::from(BOOT_TIMER_PORT), 1, Arc::new(Mutex::new(timer)))
        .map_err(VmmError::Device)?;
    Ok(())
}

/// Put a virtio device on the MMIO bus at `slot`: irqfd, one ioeventfd per queue.
fn add_virtio<D: VirtioDevice + 'static>(
    vm: &VmFd,
    mem: &Arc<GuestMemoryMmap>,
    mmio: &mut Bus,
    slot: MmioSlot,
    dev: Arc<Mutex<D>>,
) -> Result<Vec<Arc<EventFd>>, VmmError> {
    let n = dev
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .queue_max_sizes()
        .len();
    let mut evts = Vec::new();
    for i in 0..n {
        let e = EventFd::new(libc::EFD_NONBLOCK)?;
        vm.register_ioevent(&e, &IoEventAddress::Mmio(slot.base + 0x50), i as u32)
            .map_err(VmmError::kvm("KVM_IOEVENTFD"))?;
        evts.push(Arc::new(e));
    }
    let irq = EventFd::new(libc::EFD_NONBLOCK)?;
    vm.register_irqfd(&irq, slot.irq)
        .map_err(VmmError::kvm("KVM_IRQFD"))?;
    let transport = MmioTransport::new(dev, mem.clone(), Interrupt::new(irq), evts.clone());
    mmio.insert(slot.base, MMIO_SLOT, Arc::new(Mutex::new(transport)))
        .map_err(VmmError::Device)?;
    Ok(evts)
}
