//! What each `Store` holds: an empty WASI context, the call being served, the memory limiter and
//! the deadline accounting.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::manifest::Capability;
use super::{CallContext, HostServices, TICK};
use toolgate_core::redact::Secrets;
use toolgate_policy::ToolInput;

/// How much of a plugin's stdout and stderr is kept for the log (and for panic messages).
const CAPTURE_CAP: usize = 16 * 1024;

/// Longest stretch of plugin execution between two checks of its deadlines (and yields to the
/// future that drives it, which checks the wall-clock deadline too).
const SLICE_TICKS: u64 = 10;

/// The call a store serves; `None` while the manifest is read.
pub struct CallInfo {
    /// The plugin.
    pub plugin: String,
    /// The tool, as policy input sees it.
    pub tool: ToolInput,
    /// What the tool declared; host calls outside it answer `denied`.
    pub capabilities: BTreeSet<Capability>,
    /// Who and why.
    pub context: CallContext,
    /// The values of the call's params its schema marks secret: scrubbed from the argv it runs
    /// and the records it logs.
    pub secrets: Secrets,
}

/// The data of one `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory cap and whether the plugin hit it.
    pub limits: Limits,
    /// Deadline accounting.
    pub clock: Clock,
    /// The call being served.
    pub call: Option<Arc<CallInfo>>,
    /// Host services.
    pub services: Arc<HostServices>,
    /// The plugin's stdout.
    pub stdout: Capture,
    /// The plugin's stderr.
    pub stderr: Capture,
}

impl HostState {
    /// Fresh state for one call: no dirs, no env, no args, no sockets.
    pub fn new(
        services: Arc<HostServices>,
        call: Option<Arc<CallInfo>>,
        memory_cap: usize,
        limit: Duration,
        deadline: Duration,
    ) -> Self {
        let (stdout, stderr) = (Capture::default(), Capture::default());
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        Self {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: Limits { memory_cap, exhausted: false },
            clock: Clock {
                started: Instant::now(),
                cpu_at_start: thread_cpu_time(),
                limit,
                deadline,
                timed_out: false,
                past_deadline: false,
            },
            call,
            services,
            stdout,
            stderr,
        }
    }

    /// The call being served; a host function called while the manifest is read traps.
    pub fn call(&self) -> wasmtime::Result<Arc<CallInfo>> {
        self.call.clone().ok_or_else(|| wasmtime::format_err!("host functions may not be called from `manifest`"))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// The memory cap of one instance.
pub struct Limits {
    memory_cap: usize,
    /// Set when a growth was refused: a trap that follows is reported as memory exhaustion.
    pub exhausted: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.exhausted = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Plugin execution time against its limit, and wall-clock time of the whole call against its
/// deadline. Execution time is the CPU time of the thread the call runs on (each call has one,
/// see `call.rs`): the guest's code, not the time it waits for the host. A command in the
/// sandbox, a D-Bus job, or a sleep while a container's health check is still starting runs
/// elsewhere or parks the thread, and costs the plugin nothing; a guest spinning does.
pub struct Clock {
    started: Instant,
    /// This thread's CPU time when the call began.
    cpu_at_start: Duration,
    limit: Duration,
    deadline: Duration,
    /// Set when the execution limit stopped the plugin.
    pub timed_out: bool,
    /// Set when the wall-clock deadline stopped the plugin.
    pub past_deadline: bool,
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(u64::try_from(t.tv_sec).unwrap_or(0), u32::try_from(t.tv_nsec).unwrap_or(0))
}

impl Clock {
    fn remaining(&self) -> Option<Duration> {
        let spent = thread_cpu_time().saturating_sub(self.cpu_at_start);
        self.limit.checked_sub(spent).filter(|r| !r.is_zero())
    }

    fn before_deadline(&self) -> Option<Duration> {
        self.deadline.checked_sub(self.started.elapsed()).filter(|r| !r.is_zero())
    }

    /// Epoch ticks until the next check: at most one slice, at least one tick.
    pub fn next_ticks(&self) -> u64 {
        let remaining = self.remaining().unwrap_or_default().min(self.before_deadline().unwrap_or_default());
        let ticks = remaining.as_millis().div_ceil(TICK.as_millis()).max(1);
        u64::try_from(ticks).unwrap_or(u64::MAX).min(SLICE_TICKS)
    }
}

/// The store's epoch callback: stop the plugin once its execution time or its wall-clock
/// deadline is spent, otherwise yield to the executor and check again later.
pub fn on_epoch(mut store: StoreContextMut<'_, HostState>) -> wasmtime::Result<UpdateDeadline> {
    let clock = &mut store.data_mut().clock;
    if clock.before_deadline().is_none() {
        clock.past_deadline = true;
        return Err(wasmtime::Trap::Interrupt.into());
    }
    if clock.remaining().is_none() {
        clock.timed_out = true;
        return Err(wasmtime::Trap::Interrupt.into());
    }
    Ok(UpdateDeadline::Yield(clock.next_ticks()))
}

/// Captured output, cut at [`CAPTURE_CAP`] bytes; writes past the cap are accepted and dropped so
/// a chatty plugin is never aborted for printing.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// What was captured, as text.
    pub fn text(&self) -> String {
        self.0.lock().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if let Ok(mut kept) = self.0.lock() {
            let room = CAPTURE_CAP.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..buf.len().min(room)]);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
