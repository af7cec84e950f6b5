//! `toolgate:plugin@0.1.0`, frozen in `wit/v0.1.0/`: components built against it keep loading.
//! Its imports are the current host functions (each 0.1.0 value converts one to one, and an error
//! case 0.1.0 lacks becomes the nearest one it has); its exports are read into the current types.
//! A 0.1.0 component cannot ask for what came later (`services`, `packages`, `filesystems`): its
//! capability variant has no case for them.

use super::toolgate::plugin as now;
use crate::state::HostState;

wasmtime::component::bindgen!({
    path: "../../wit/v0.1.0",
    world: "plugin",
    imports: { default: async | trappable },
    exports: { default: async },
});

use exports::toolgate::plugin::tool as old_tool;
use toolgate::plugin as old;

/// `From` for records whose fields are the same in both versions.
macro_rules! same_record {
    ($from:ty => $to:ty { $($field:ident),* $(,)? }) => {
        impl From<$from> for $to {
            fn from(v: $from) -> Self {
                Self { $($field: v.$field.into()),* }
            }
        }
    };
}

impl From<now::types::Error> for old::types::Error {
    fn from(e: now::types::Error) -> Self {
        use now::types::Error as E;
        match e {
            E::InvalidParams(m) => Self::InvalidParams(m),
            E::Denied(m) | E::NotAllowed(m) | E::PermissionDenied(m) => Self::Denied(m),
            E::Failed(m) | E::NotFound(m) => Self::Failed(m),
            E::Unavailable(m) => Self::Unavailable(m),
            E::Timeout(m) => Self::Timeout(m),
        }
    }
}

impl From<old::types::Error> for now::types::Error {
    fn from(e: old::types::Error) -> Self {
        use old::types::Error as E;
        match e {
            E::InvalidParams(m) => Self::InvalidParams(m),
            E::Denied(m) => Self::Denied(m),
            E::Failed(m) => Self::Failed(m),
            E::Unavailable(m) => Self::Unavailable(m),
            E::Timeout(m) => Self::Timeout(m),
        }
    }
}

/// A current host answer, as 0.1.0 sees it.
fn answer<T, U: From<T>>(
    r: wasmtime::Result<Result<T, now::types::Error>>,
) -> wasmtime::Result<Result<U, old::types::Error>> {
    r.map(|r| r.map(U::from).map_err(Into::into))
}

fn answer_list<T, U: From<T>>(
    r: wasmtime::Result<Result<Vec<T>, now::types::Error>>,
) -> wasmtime::Result<Result<Vec<U>, old::types::Error>> {
    r.map(|r| r.map(|v| v.into_iter().map(U::from).collect()).map_err(Into::into))
}

impl old::types::Host for HostState {}

same_record!(old::sandbox::ExecRequest => now::sandbox::ExecRequest { argv, profile, timeout_ms });
same_record!(now::sandbox::ExecOutput => old::sandbox::ExecOutput { exit_code, stdout, stderr, duration_ms, truncated });

impl old::sandbox::Host for HostState {
    async fn exec(
        &mut self,
        request: old::sandbox::ExecRequest,
    ) -> wasmtime::Result<Result<old::sandbox::ExecOutput, old::types::Error>> {
        answer(now::sandbox::Host::exec(self, request.into()).await)
    }
}

same_record!(now::containers::ContainerSummary => old::containers::ContainerSummary { id, name, image, state, status });
same_record!(now::containers::ContainerDetails => old::containers::ContainerDetails {
    id, name, image, state, running, started_at, health, restart_count
});
same_record!(now::containers::ContainerLogs => old::containers::ContainerLogs { text, truncated });

impl old::containers::Host for HostState {
    async fn list(
        &mut self,
        all: bool,
    ) -> wasmtime::Result<Result<Vec<old::containers::ContainerSummary>, old::types::Error>> {
        answer_list(now::containers::Host::list(self, all).await)
    }
    async fn inspect(
        &mut self,
        c: String,
    ) -> wasmtime::Result<Result<old::containers::ContainerDetails, old::types::Error>> {
        answer(now::containers::Host::inspect(self, c).await)
    }
    async fn logs(
        &mut self,
        c: String,
        tail: u32,
    ) -> wasmtime::Result<Result<old::containers::ContainerLogs, old::types::Error>> {
        answer(now::containers::Host::logs(self, c, tail).await)
    }
    async fn start(&mut self, c: String) -> wasmtime::Result<Result<(), old::types::Error>> {
        answer(now::containers::Host::start(self, c).await)
    }
    async fn stop(&mut self, c: String) -> wasmtime::Result<Result<(), old::types::Error>> {
        answer(now::containers::Host::stop(self, c).await)
    }
    async fn restart(&mut self, c: String) -> wasmtime::Result<Result<(), old::types::Error>> {
        answer(now::containers::Host::restart(self, c).await)
    }
}

impl From<now::workspace::EntryKind> for old::workspace::EntryKind {
    fn from(k: now::workspace::EntryKind) -> Self {
        use now::workspace::EntryKind as K;
        match k {
            K::File => Self::File,
            K::Directory => Self::Directory,
            K::Symlink => Self::Symlink,
            K::Other => Self::Other,
        }
    }
}
same_record!(now::workspace::DirEntry => old::workspace::DirEntry { name, kind, size });

impl old::workspace::Host for HostState {
    async fn read(&mut self, path: String) -> wasmtime::Result<Result<Vec<u8>, old::types::Error>> {
        answer(now::workspace::Host::read(self, path).await)
    }
    async fn list(
        &mut self,
        path: String,
    ) -> wasmtime::Result<Result<Vec<old::workspace::DirEntry>, old::types::Error>> {
        answer_list(now::workspace::Host::list(self, path).await)
    }
    async fn write(
        &mut self,
        path: String,
        content: Vec<u8>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, old::types::Error>> {
        answer(now::workspace::Host::write(self, path, content).await)
    }
    async fn remove(&mut self, path: String) -> wasmtime::Result<Result<Option<Vec<u8>>, old::types::Error>> {
        answer(now::workspace::Host::remove(self, path).await)
    }
}

same_record!(now::audit::Entry => old::audit::Entry {
    seq, timestamp, kind, actor, role, tool, action_id, command, allowed, reason
});

impl old::audit::Host for HostState {
    async fn recent(&mut self, last_n: u32) -> wasmtime::Result<Result<Vec<old::audit::Entry>, old::types::Error>> {
        answer_list(now::audit::Host::recent(self, last_n).await)
    }
}

impl From<old::log::Level> for now::log::Level {
    fn from(l: old::log::Level) -> Self {
        use old::log::Level as L;
        match l {
            L::Trace => Self::Trace,
            L::Debug => Self::Debug,
            L::Info => Self::Info,
            L::Warn => Self::Warn,
            L::Error => Self::Error,
        }
    }
}

impl old::log::Host for HostState {
    async fn log(
        &mut self,
        level: old::log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        now::log::Host::log(self, level.into(), message, fields).await
    }
}

same_record!(now::context::CallContext => old::context::CallContext { action_id, tool, caller, role, justification });

impl old::context::Host for HostState {
    async fn current(&mut self) -> wasmtime::Result<old::context::CallContext> {
        now::context::Host::current(self).await.map(Into::into)
    }
}

// Exports: what a 0.1.0 component answers, in the current types.

impl From<old::types::Category> for now::types::Category {
    fn from(c: old::types::Category) -> Self {
        use old::types::Category as C;
        match c {
            C::Read => Self::Read,
            C::Safe => Self::Safe,
            C::Moderate => Self::Moderate,
            C::Sensitive => Self::Sensitive,
            C::Critical => Self::Critical,
        }
    }
}

impl From<old::types::Capability> for now::types::Capability {
    fn from(c: old::types::Capability) -> Self {
        use old::types::Capability as C;
        match c {
            C::Exec(profile) => Self::Exec(profile),
            C::ContainersRead => Self::ContainersRead,
            C::ContainersManage => Self::ContainersManage,
            C::WorkspaceRead => Self::WorkspaceRead,
            C::WorkspaceWrite => Self::WorkspaceWrite,
            C::AuditRead => Self::AuditRead,
        }
    }
}

impl From<old_tool::ToolSpec> for super::exports::toolgate::plugin::tool::ToolSpec {
    fn from(t: old_tool::ToolSpec) -> Self {
        Self {
            name: t.name,
            description: t.description,
            category: t.category.into(),
            params_schema: t.params_schema,
            output_schema: t.output_schema,
            supports_verify: t.supports_verify,
            supports_rollback: t.supports_rollback,
            capabilities: t.capabilities.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<old_tool::Manifest> for super::exports::toolgate::plugin::tool::Manifest {
    fn from(m: old_tool::Manifest) -> Self {
        Self { name: m.name, version: m.version, tools: m.tools.into_iter().map(Into::into).collect() }
    }
}

same_record!(old_tool::InvokeResult => super::exports::toolgate::plugin::tool::InvokeResult { output, undo });
same_record!(old_tool::Verdict => super::exports::toolgate::plugin::tool::Verdict { ok, detail });
