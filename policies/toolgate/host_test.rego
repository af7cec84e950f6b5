# Tests of the host decision point, run by `toolgate policy test`: which tools may make which
# calls on the host's systemd and PackageKit, and on which units and packages, by role.
package toolgate.host_test

import data.toolgate.host
import data.toolgate.scopes

call(role, tool, plugin, interface, method, access, objects) := d if {
	d := host.decision with input as {
		"caller": {"user": "alice", "role": role, "auth_method": "api_key", "source_ip": null},
		"tool": {
			"name": tool, "plugin": plugin, "category": "SENSITIVE",
			"supports_verify": true, "supports_rollback": true,
		},
		"interface": interface,
		"method": method,
		"access": access,
		"objects": objects,
	}
}

restart(role, unit) := call(role, "systemd_restart", "systemd", "services", "restart", "manage", [unit])

install(role, packages) := call(role, "apt_install", "apt", "packages", "install", "manage", packages)

codes(d) := [r.code | some r in d.reasons]

test_any_role_reads_any_unit if {
	every role in ["viewer", "operator", "admin"] {
		call(role, "systemd_status", "systemd", "services", "status", "read", ["ssh.service"]).allow
	}
}

test_only_admins_restart_listed_units if {
	restart("admin", "nginx.service").allow
	codes(restart("operator", "nginx.service")) == ["not_allowed"]
	codes(restart("viewer", "nginx.service")) == ["not_allowed"]
	d := restart("admin", "ssh.service")
	codes(d) == ["not_allowed"]
	contains(d.reasons[0].message, "unit `ssh.service`")
}

test_a_tool_makes_only_its_listed_calls if {
	codes(call("admin", "systemd_status", "systemd", "services", "restart", "manage", ["nginx.service"])) == ["call_not_allowed"]
	codes(call("admin", "systemd_restart", "systemd", "packages", "install", "manage", ["htop"])) == ["call_not_allowed"]
}

test_tool_pinned_to_its_plugin if {
	codes(call("admin", "systemd_restart", "evil", "services", "restart", "manage", ["nginx.service"])) == ["plugin_mismatch"]
	codes(call("admin", "wipe", "evil", "services", "stop", "manage", ["nginx.service"])) == ["tool_unlisted"]
}

# Pinned lists: a policy set that lists more packages keeps this test.
test_every_package_must_be_listed if {
	lists := {"admin": ["htop", "jq"]}
	install("admin", ["htop", "jq"]).allow with data.host.packages.manage as lists
	codes(install("admin", ["htop", "netcat-openbsd"])) == ["not_allowed"] with data.host.packages.manage as lists
	codes(install("operator", ["htop"])) == ["not_allowed"] with data.host.packages.manage as lists
}

test_prefix_patterns if {
	scopes.matches("nginx*", "nginx-extras")
	not scopes.matches("nginx*", "apache2")
	scopes.matches("*", "anything")
	not scopes.matches("nginx", "nginx-extras")
}

test_operators_restart_the_units_listed_for_them if {
	listed := {"operator": ["web-*"], "admin": ["nginx.service"]}
	restart("operator", "web-1.service").allow with data.host.services.manage as listed
	codes(restart("operator", "nginx.service")) == ["not_allowed"] with data.host.services.manage as listed
	restart("admin", "web-1.service").allow with data.host.services.manage as listed
}

test_refresh_names_nothing if call("admin", "apt_update", "apt", "packages", "refresh", "read", []).allow
