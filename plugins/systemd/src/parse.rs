//! Parsers of `systemctl status` and `journalctl` text (systemd 252, Debian 12).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What `systemctl status UNIT` says about a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UnitStatus {
    /// Full unit name, e.g. `nginx.service`.
    pub unit: String,
    /// The unit's description.
    pub description: Option<String>,
    /// Load state: `loaded`, `not-found`, `masked`, ...
    pub load_state: Option<String>,
    /// Unit file state: `enabled`, `disabled`, `static`, ...
    pub unit_file_state: Option<String>,
    /// Active state: `active`, `inactive`, `failed`, `activating`, `deactivating`, `reloading`.
    pub active_state: String,
    /// Sub state: `running`, `exited`, `dead`, `failed`, ...
    pub sub_state: Option<String>,
    /// Why a failed unit failed, e.g. `exit-code`.
    pub result: Option<String>,
    /// When the unit entered its active state, as systemd prints it (`Mon 2026-11-23 10:12:01 UTC`).
    pub since: Option<String>,
    /// Process id of the running main process.
    pub main_pid: Option<u32>,
}

/// Parse the text of `systemctl status`; `None` when it has no `Active:` line (not a status).
pub fn status(text: &str) -> Option<UnitStatus> {
    let mut lines = text.lines();
    let head = lines.next()?;
    // The first character is a state bullet (`●`, `○`, `×`, `↻`): skip to the name.
    let head = head.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let (unit, description) = match head.split_once(" - ") {
        Some((u, d)) => (u.trim().to_owned(), Some(d.trim().to_owned())),
        None => (head.trim().to_owned(), None),
    };
    let mut status = UnitStatus {
        unit,
        description,
        load_state: None,
        unit_file_state: None,
        active_state: String::new(),
        sub_state: None,
        result: None,
        since: None,
        main_pid: None,
    };
    for line in lines {
        let Some((key, value)) = line.trim_start().split_once(": ") else { continue };
        match key {
            "Loaded" => {
                let (state, detail) = split_paren(value);
                status.load_state = Some(state.to_owned());
                status.unit_file_state = detail.and_then(|d| d.split("; ").nth(1)).map(str::to_owned);
            }
            "Active" => {
                let (state, detail) = split_paren(value);
                status.active_state = state.to_owned();
                match detail {
                    Some(d) if d.starts_with("Result: ") => {
                        status.result = Some(d.trim_start_matches("Result: ").to_owned());
                        // systemd's sub state of a unit shown as `failed (Result: ...)` is `failed`.
                        status.sub_state = Some(state.to_owned());
                    }
                    Some(d) => status.sub_state = Some(d.to_owned()),
                    None => {}
                }
                status.since =
                    value.split_once(" since ").map(|(_, s)| s.split(';').next().unwrap_or(s).trim().to_owned());
            }
            "Main PID" => {
                let (pid, detail) = split_paren(value);
                // `Main PID: 812 (code=exited, status=1/FAILURE)` names a process that is gone.
                if !detail.is_some_and(|d| d.starts_with("code=")) {
                    status.main_pid = pid.parse().ok();
                }
            }
            _ => {}
        }
    }
    (!status.active_state.is_empty()).then_some(status)
}

/// `word (detail) rest` into `word` and `detail`.
fn split_paren(value: &str) -> (&str, Option<&str>) {
    let value = value.trim();
    let word = value.split_whitespace().next().unwrap_or("");
    let detail = value.split_once('(').and_then(|(_, r)| r.split_once(')')).map(|(d, _)| d);
    (word, detail)
}

/// One journal line of `journalctl`'s default `short` output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JournalEntry {
    /// Local time as journalctl prints it (`Nov 23 10:12:01`); absent on a continuation line.
    pub timestamp: Option<String>,
    /// Host name.
    pub host: Option<String>,
    /// Syslog identifier, e.g. `nginx` or `systemd`.
    pub identifier: Option<String>,
    /// Process id that logged it.
    pub pid: Option<u32>,
    /// The message.
    pub message: String,
}

/// Parse `journalctl` short output. Marker lines (`-- No entries --`, `-- Boot ... --`) are not entries.
pub fn journal(text: &str) -> Vec<JournalEntry> {
    let marker = |l: &str| l.starts_with("-- ") && l.ends_with(" --");
    text.lines().filter(|l| !l.is_empty() && !marker(l)).map(entry).collect()
}

fn entry(line: &str) -> JournalEntry {
    let plain = || JournalEntry { timestamp: None, host: None, identifier: None, pid: None, message: line.to_owned() };
    // `Mmm dd HH:MM:SS`: 15 characters, the day padded with a space.
    let (Some(stamp), Some(rest)) = (line.get(..15), line.get(16..)) else { return plain() };
    let b = stamp.as_bytes();
    let looks_like_time = b[0].is_ascii_uppercase() && b[3] == b' ' && b[9] == b':' && b[12] == b':';
    if !looks_like_time {
        return plain();
    }
    let Some((host, rest)) = rest.split_once(' ') else { return plain() };
    let Some((tag, message)) = rest.split_once(": ").or_else(|| rest.strip_suffix(':').map(|t| (t, ""))) else {
        return plain();
    };
    let (identifier, pid) = match tag.strip_suffix(']').and_then(|t| t.rsplit_once('[')) {
        Some((id, pid)) => (id, pid.parse().ok()),
        None => (tag, None),
    };
    JournalEntry {
        timestamp: Some(stamp.to_owned()),
        host: Some(host.to_owned()),
        identifier: Some(identifier.to_owned()),
        pid,
        message: message.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    const RUNNING: &str = "\u{25cf} nginx.service - A high performance web server and a reverse proxy server
     Loaded: loaded (/lib/systemd/system/nginx.service; enabled; preset: enabled)
     Active: active (running) since Mon 2026-11-23 10:12:01 UTC; 15h ago
       Docs: man:nginx(8)
    Process: 612 ExecStartPre=/usr/sbin/nginx -t -q -g daemon on; master_process on; (code=exited, status=0/SUCCESS)
    Process: 631 ExecStart=/usr/sbin/nginx -g daemon on; master_process on; (code=exited, status=0/SUCCESS)
   Main PID: 640 (nginx)
      Tasks: 3 (limit: 4644)
     Memory: 4.1M
        CPU: 61ms
     CGroup: /system.slice/nginx.service
             \u{251c}\u{2500}640 \"nginx: master process /usr/sbin/nginx -g daemon on; master_process on;\"
             \u{2514}\u{2500}641 \"nginx: worker process\"

Nov 23 10:12:01 web1 systemd[1]: Starting nginx.service - A high performance web server and a reverse proxy server...
Nov 23 10:12:01 web1 systemd[1]: Started nginx.service - A high performance web server and a reverse proxy server.
";

    const INACTIVE: &str = "\u{25cb} postgresql.service - PostgreSQL RDBMS
     Loaded: loaded (/lib/systemd/system/postgresql.service; disabled; preset: enabled)
     Active: inactive (dead)
";

    const FAILED: &str = "\u{00d7} broken.service - Example service that fails
     Loaded: loaded (/etc/systemd/system/broken.service; enabled; preset: enabled)
     Active: failed (Result: exit-code) since Tue 2026-11-24 01:02:03 UTC; 2min 5s ago
   Duration: 12ms
    Process: 812 ExecStart=/usr/local/bin/broken (code=exited, status=1/FAILURE)
   Main PID: 812 (code=exited, status=1/FAILURE)
        CPU: 4ms
";

    #[test]
    fn a_running_unit_gives_state_since_and_main_pid() {
        let s = status(RUNNING).expect("a status");
        assert_eq!(s.unit, "nginx.service");
        assert_eq!(s.description.as_deref(), Some("A high performance web server and a reverse proxy server"));
        assert_eq!(s.load_state.as_deref(), Some("loaded"));
        assert_eq!(s.unit_file_state.as_deref(), Some("enabled"));
        assert_eq!(s.active_state, "active");
        assert_eq!(s.sub_state.as_deref(), Some("running"));
        assert_eq!(s.since.as_deref(), Some("Mon 2026-11-23 10:12:01 UTC"));
        assert_eq!(s.main_pid, Some(640));
        assert_eq!(s.result, None);
    }

    #[test]
    fn an_inactive_unit_has_no_since_and_no_pid() {
        let s = status(INACTIVE).expect("a status");
        assert_eq!((s.active_state.as_str(), s.sub_state.as_deref()), ("inactive", Some("dead")));
        assert_eq!(s.unit_file_state.as_deref(), Some("disabled"));
        assert_eq!((s.since, s.main_pid), (None, None));
    }

    #[test]
    fn a_failed_unit_gives_its_result_and_no_dead_pid() {
        let s = status(FAILED).expect("a status");
        assert_eq!(s.unit, "broken.service");
        assert_eq!(s.active_state, "failed");
        assert_eq!(s.sub_state.as_deref(), Some("failed"));
        assert_eq!(s.result.as_deref(), Some("exit-code"));
        assert_eq!(s.since.as_deref(), Some("Tue 2026-11-24 01:02:03 UTC"));
        assert_eq!(s.main_pid, None);
    }

    #[test]
    fn text_without_an_active_line_is_not_a_status() {
        assert_eq!(status("Unit nosuch.service could not be found.\n"), None);
        assert_eq!(status(""), None);
    }

    #[test]
    fn journal_lines_are_split_into_fields_and_markers_dropped() {
        let text = "Nov 23 10:12:01 web1 systemd[1]: Starting nginx.service - A high performance web server...
Nov  3 09:00:00 web1 nginx[640]: 2026/11/03 09:00:00 [warn] 640#640: conflicting server name \"_\" on 0.0.0.0:80, ignored
Nov 23 10:13:00 web1 kernel: eth0: link up
-- Boot 4c5d1c4bb1c44d5e9d3a2b0c2f3e1a77 --
    continuation of a multi-line message
";
        let entries = journal(text);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].identifier.as_deref(), Some("systemd"));
        assert_eq!(entries[0].pid, Some(1));
        assert_eq!(entries[0].host.as_deref(), Some("web1"));
        assert_eq!(entries[1].timestamp.as_deref(), Some("Nov  3 09:00:00"));
        assert_eq!(entries[1].pid, Some(640));
        assert!(entries[1].message.ends_with("on 0.0.0.0:80, ignored"));
        assert_eq!((entries[2].identifier.as_deref(), entries[2].pid), (Some("kernel"), None));
        assert_eq!(entries[2].message, "eth0: link up");
        assert_eq!(entries[3].timestamp, None);
        assert_eq!(entries[3].message, "    continuation of a multi-line message");
        assert!(journal("-- No entries --\n").is_empty());
    }
}
