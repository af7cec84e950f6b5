# Tests of the exec decision point, run by `toolgate policy test`: the allowlists of `data.tools`
# by role, and every reason code.
package toolgate.exec_test

import data.toolgate.exec

run(role, tool, plugin, argv, profile) := d if {
	d := exec.decision with input as {
		"caller": {"user": "alice", "role": role, "auth_method": "api_key", "source_ip": null},
		"tool": {
			"name": tool, "plugin": plugin, "category": "READ",
			"supports_verify": false, "supports_rollback": false,
		},
		"argv": argv,
		"profile": profile,
	}
}

# `run_command` decided at its highest class: what the role may run is then the only limit.
cmd(role, argv) := cmd_at(role, "MODERATE", argv)

# `run_command` decided at `category` by the action policy.
cmd_at(role, category, argv) := d if {
	d := exec.decision with input as {
		"caller": {"user": "alice", "role": role, "auth_method": "api_key", "source_ip": null},
		"tool": {
			"name": "run_command", "plugin": "command", "category": category,
			"supports_verify": false, "supports_rollback": false,
		},
		"argv": argv,
		"profile": "default",
	}
}

codes(d) := [r.code | some r in d.reasons]

# The classes an operator might add to the shipped ones (which are READ commands only): the
# tests of the class mechanism use them (`with data.tools.run_command.classes as own_classes`).
own_classes := {
	"READ": [["ls", "{PATH...}"], ["cat", "{PATH}", "{PATH...}"]],
	"MODERATE": [["systemctl", "restart", "{UNIT}"], ["docker", "restart", "{UNIT}"], ["git", "pull"]],
}

test_viewer_read_commands_allowed if {
	cmd("viewer", ["ls"]).allow
	cmd("viewer", ["ls", "-lah", "/workspace"]).allow
	cmd("viewer", ["ls", "/var/log"]).allow
	cmd("viewer", ["cat", "/etc/hostname"]).allow
	cmd("viewer", ["grep", "error", "/var/log/syslog"]).allow
	cmd("viewer", ["df"]).allow
	cmd("viewer", ["df", "/srv"]).allow
}

# The shipped classes hold no restart, pull or Docker command (the sandbox has no D-Bus, network
# or Docker socket; restarts are the `systemd_restart` and `docker_restart` tools): unclassified,
# refused for every role, even in a call decided at MODERATE.
removed_commands := [
	["systemctl", "restart", "nginx"],
	["git", "pull"],
	["docker", "restart", "web-1"],
	["git", "status"],
	["docker", "ps"],
]

# Counted, not checked with `every` (see commands.rego).
test_shipped_defaults_refuse_restarts_and_pulls_for_every_role if {
	roles := ["viewer", "operator", "admin"]
	refused := [[role, argv] |
		some role in roles
		some argv in removed_commands
		d := cmd(role, argv)
		not d.allow
		d.reasons == [{
			"code": "command_not_allowed",
			"message": sprintf("`%s` is not a command tool \"run_command\" may run", [concat(" ", argv)]),
		}]
	]
	count(refused) == count(roles) * count(removed_commands)
}

test_viewer_cannot_run_a_moderate_class if {
	d := cmd("viewer", ["systemctl", "restart", "nginx"]) with data.tools.run_command.classes as own_classes
	d.reasons == [{"code": "command_not_allowed", "message": "role \"viewer\" may not run MODERATE commands such as `systemctl restart nginx`"}]
	codes(cmd("viewer", ["git", "pull"])) == ["command_not_allowed"] with data.tools.run_command.classes as own_classes
}

test_operator_moderate_commands_allowed if {
	cmd("operator", ["systemctl", "restart", "nginx.service"]).allow with data.tools.run_command.classes as own_classes
	cmd("operator", ["docker", "restart", "web-1"]).allow with data.tools.run_command.classes as own_classes
	cmd("operator", ["git", "pull"]).allow with data.tools.run_command.classes as own_classes
	cmd("operator", ["cat", "/etc/hostname"]).allow with data.tools.run_command.classes as own_classes
}

test_operator_cannot_run_arbitrary if {
	codes(cmd("operator", ["rm", "-rf", "/"])) == ["flag_not_allowed"]
	codes(cmd("operator", ["sh", "-c", "id"])) == ["flag_not_allowed"]
	codes(cmd("operator", ["sh", "/tmp/x"])) == ["command_not_allowed"]
	codes(cmd("operator", ["systemctl", "restart", "--force"])) == ["flag_not_allowed"]
	codes(cmd("operator", ["rm", "/etc/passwd"])) == ["command_not_allowed"]
}

test_admin_inherits_every_list if cmd("admin", ["git", "pull"]).allow with data.tools.run_command.classes as own_classes

test_empty_argv_denied if codes(cmd("admin", [])) == ["command_not_allowed"]

test_option_injection_in_placeholder_denied if {
	codes(cmd("viewer", ["cat", "--help"])) == ["flag_not_allowed"]
	codes(cmd("viewer", ["grep", "-r", "/"])) == ["flag_not_allowed"]
	codes(cmd("viewer", ["grep", "--", "-x", "/"])) == ["flag_not_allowed"]
}

test_flags_allowlisted_per_command if {
	cmd("viewer", ["ls", "-l", "-a", "/workspace"]).allow
	cmd("viewer", ["ls", "/workspace", "-lah"]).allow
	cmd("viewer", ["df", "-h"]).allow
	cmd("viewer", ["grep", "-c", "reset", "/var/log/app.log"]).allow
	cmd("viewer", ["cat", "-n", "/etc/hostname"]).allow
}

test_unknown_flag_refused_naming_it if {
	d := cmd("viewer", ["ls", "-laz", "/workspace"])
	codes(d) == ["flag_not_allowed"]
	contains(d.reasons[0].message, "`-laz`")
	e := cmd("viewer", ["df", "-h", "--sync"])
	codes(e) == ["flag_not_allowed"]
	contains(e.reasons[0].message, "`--sync`")
	f := cmd("viewer", ["rm", "-f", "/workspace/x"])
	codes(f) == ["flag_not_allowed"]
	contains(f.reasons[0].message, "`rm` takes no flags")
}

test_command_above_the_decided_category_refused if {
	d := cmd_at("operator", "READ", ["systemctl", "restart", "nginx"]) with data.tools.run_command.classes as own_classes
	d.reasons == [{"code": "category_exceeded", "message": "`systemctl restart nginx` is a MODERATE command, above the READ category this call was decided at"}]
	cmd_at("operator", "MODERATE", ["systemctl", "restart", "nginx"]).allow with data.tools.run_command.classes as own_classes
	cmd_at("operator", "READ", ["ls", "/workspace"]).allow
	codes(cmd_at("admin", "EXTREME", ["ls"])) == ["category_exceeded"]
}

test_unclassified_command_refused if {
	d := cmd("admin", ["rm", "/etc/passwd"])
	codes(d) == ["command_not_allowed"]
	contains(d.reasons[0].message, "`rm /etc/passwd`")
}

test_builtin_tools_have_their_read_commands if {
	run("viewer", "systemd_logs", "systemd", journal("nginx", "50"), "journal").allow
	run("viewer", "network_listeners", "network", ["cat", "/host/proc/net/tcp", "/host/proc/net/tcp6", "/host/proc/net/udp", "/host/proc/net/udp6"], "host-net").allow
}

journal(unit, n) := ["journalctl", "-o", "json", "-u", unit, "-n", n, "--no-pager"]

# The tools that act through the host's systemd and PackageKit run no command at all.
test_host_interface_tools_run_no_command if {
	codes(run("viewer", "systemd_status", "systemd", ["systemctl", "status", "--no-pager", "nginx"], "journal")) == ["command_not_allowed", "profile_not_allowed"]
	codes(run("admin", "systemd_restart", "systemd", ["systemctl", "restart", "nginx"], "journal")) == ["command_not_allowed", "profile_not_allowed"]
	codes(run("admin", "apt_install", "apt", ["apt-get", "install", "-y", "-q", "htop"], "default")) == ["command_not_allowed", "profile_not_allowed"]
}

test_builtin_tools_are_pinned_to_their_plugin_and_profile if {
	codes(run("viewer", "systemd_logs", "command", journal("nginx", "5"), "journal")) == ["plugin_mismatch"]
	codes(run("viewer", "systemd_logs", "systemd", journal("nginx", "5"), "default")) == ["profile_not_allowed"]
	codes(run("viewer", "network_listeners", "network", ["cat", "/host/proc/net/tcp"], "default")) == ["command_not_allowed", "profile_not_allowed"]
	codes(run("operator", "run_command", "shell", ["ls"], "default")) == ["plugin_mismatch"]
}

test_network_listeners_reads_only_the_socket_tables if {
	codes(run("viewer", "network_listeners", "network", ["cat", "/etc/shadow"], "host-net")) == ["command_not_allowed"]
	# The container's own tables are not the host's: only the mounted view of `/proc/1/net` is read.
	codes(run("viewer", "network_listeners", "network", ["cat", "/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6"], "host-net")) == ["command_not_allowed"]
	codes(run("viewer", "network_listeners", "network", ["cat", "/host/proc/net/../../../etc/shadow"], "host-net")) == ["command_not_allowed"]
}

test_journal_line_count_must_be_a_number if {
	d := run("viewer", "systemd_logs", "systemd", journal("nginx", "all"), "journal")
	codes(d) == ["command_not_allowed"]
}

test_tool_unlisted if codes(run("admin", "format_disk", "evil", ["mkfs", "/dev/sda"], "default")) == ["tool_unlisted"]

test_plugin_mismatch if codes(run("viewer", "systemd_logs", "evil", journal("nginx", "5"), "journal")) == ["plugin_mismatch"]

test_profile_not_allowed if codes(run("viewer", "systemd_logs", "systemd", journal("nginx", "5"), "privileged")) == ["profile_not_allowed"]

test_exec_requirements_are_empty if cmd("viewer", ["ls"]).requirements == []

test_unknown_role_runs_no_command if {
	codes(cmd("root", ["ls"])) == ["command_not_allowed"]
	codes(cmd("root", ["systemctl", "restart", "nginx"])) == ["command_not_allowed"] with data.tools.run_command.classes as own_classes
}

test_an_entry_without_profiles_allows_none if {
	d := exec.decision with input as {
		"caller": {"user": "alice", "role": "admin", "auth_method": "api_key", "source_ip": null},
		"tool": {"name": "run_echo", "plugin": "well_behaved", "category": "READ", "supports_verify": false, "supports_rollback": false},
		"argv": ["echo", "hi"],
		"profile": "default",
	}
		with data.tools.run_echo as {"plugin": "well_behaved", "commands": {"viewer": [["echo", "{TEXT...}"]]}}
	codes(d) == ["profile_not_allowed"]
}
