//! Built-in plugin `network`: the host's listening sockets, read from the kernel's socket tables
//! in the `host-net` sandbox profile, which shows the host's `/proc/1/net` read-only at
//! `/host/proc/net` (the tables of the host's network namespace, without joining it). That is
//! what `ss -ltnup` reads; busybox has no `ss`.
//!
//! # Layout
//! - this file: the tool;
//! - `proc_net`: the parser of the kernel's socket tables;
//! - `exec`: running a command and keeping its raw text, capped.

pub mod proc_net;

use toolgate_sdk::prelude::*;

use crate::proc_net::Listener;
use toolgate_sdk::sandbox::{self, exit_failure};
use toolgate_sdk::text::capped;

/// The sandbox profile the command runs in.
const PROFILE: &str = "host-net";

/// The socket tables read, where the `host-net` profile mounts the host's `/proc/1/net` (the
/// container runtime refuses mounts inside the container's own `/proc`); a kernel without IPv6
/// lacks the `6` ones.
const TABLES: [&str; 4] = ["/host/proc/net/tcp", "/host/proc/net/tcp6", "/host/proc/net/udp", "/host/proc/net/udp6"];

toolgate_sdk::plugin!(name = "network", tools = [NetworkListeners]);

/// Output of `network_listeners`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListenersOutput {
    /// Listening TCP sockets and unconnected UDP sockets, by port.
    pub listeners: Vec<Listener>,
    /// Tables that could not be read (e.g. `/host/proc/net/tcp6` without IPv6).
    pub warnings: Vec<String>,
    /// The tables as read, capped at 64 KiB.
    pub raw: String,
    /// True when `raw` was cut at its cap.
    pub raw_truncated: bool,
}

/// `network_listeners`: `cat /host/proc/net/{tcp,tcp6,udp,udp6}`, parsed.
pub struct NetworkListeners;

impl Tool for NetworkListeners {
    const NAME: &'static str = "network_listeners";
    const DESCRIPTION: &'static str =
        "Lists the host's listening sockets: protocol, address, port, owner uid and inode.";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::Exec(PROFILE)];
    type Params = NoParams;
    type Output = ListenersOutput;

    fn invoke(_: NoParams) -> Result<ListenersOutput, Error> {
        let argv: Vec<&str> = std::iter::once("cat").chain(TABLES).collect();
        let out = sandbox::exec(&argv, PROFILE)?;
        // `cat` exits 1 when one table is missing but still prints the others.
        if out.exit_code != 0 && out.stdout.trim().is_empty() {
            return Err(exit_failure(&argv, &out));
        }
        let listeners =
            proc_net::listeners(&out.stdout).map_err(|e| Error::failed(format!("unreadable socket table: {e}")))?;
        let warnings = out.stderr.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
        let (raw, raw_truncated) = capped(&out.stdout);
        Ok(ListenersOutput { listeners, warnings, raw, raw_truncated: raw_truncated || out.truncated })
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn the_manifest_declares_the_host_net_profile() {
        let m = PLUGIN.manifest();
        assert_eq!(m.tools[0].name, "network_listeners");
        assert_eq!(m.tools[0].category, Category::Read);
        assert!(!m.tools[0].supports_rollback);
        let err = PLUGIN.invoke("network_listeners", r#"{"extra":1}"#).expect_err("unknown field");
        assert!(matches!(err, Error::InvalidParams(_)), "{err}");
    }
}
