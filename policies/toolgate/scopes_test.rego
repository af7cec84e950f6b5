# Tests of the scopes (scopes.rego) as the action point applies them to the target a tool names:
# exclusions, lists inherited from lower roles, and changes delegated to operators.
package toolgate.scopes_test

import data.toolgate.action
import data.toolgate.scopes

tool(name, category) := {
	"name": name, "plugin": plugin[name], "category": category,
	"supports_verify": true, "supports_rollback": false,
}

plugin := {"systemd_status": "systemd", "systemd_logs": "systemd", "systemd_restart": "systemd", "docker_logs": "docker", "docker_restart": "docker"}

category := {"systemd_status": "READ", "systemd_logs": "READ", "systemd_restart": "SENSITIVE", "docker_logs": "READ", "docker_restart": "SENSITIVE"}

decide(role, name, params) := d if {
	d := action.decision with input as call(role, name, params, false)
}

listing(role, name) := d if {
	d := action.decision with input as call(role, name, {}, true)
}

call(role, name, params, dry_run) := {
	"caller": {"user": "olga", "role": role, "auth_method": "password", "source_ip": null},
	"tool": tool(name, category[name]),
	"params": params,
	"justification": "the service answers 502 since the deploy",
	"approval": "none",
	"dry_run": dry_run,
}

codes(d) := [r.code | some r in d.reasons]

operators := {"operator": ["web-*"], "admin": ["nginx.service", "web-*"]}

operator_containers := {"operator": ["shop-api"], "admin": ["*"]}

test_names_are_canonical_units if {
	scopes.canonical("services", "nginx") == "nginx.service"
	scopes.canonical("services", "backup.timer") == "backup.timer"
	scopes.canonical("services", ".service") == ".service.service"
	scopes.canonical("containers", "web") == "web"
}

test_an_exclusion_binds_its_own_list_only if {
	lists := {"viewer": ["*", "!toolgate.service"], "admin": ["*"]}
	not scopes.allowed("services", "logs", "viewer", "toolgate.service") with data.host.services.logs as lists
	scopes.allowed("services", "logs", "viewer", "nginx.service") with data.host.services.logs as lists
	scopes.allowed("services", "logs", "operator", "nginx.service") with data.host.services.logs as lists
	not scopes.allowed("services", "logs", "operator", "toolgate.service") with data.host.services.logs as lists
	scopes.allowed("services", "logs", "admin", "toolgate.service") with data.host.services.logs as lists
}

test_the_defaults_keep_toolgates_own_journal_from_viewers if {
	d := decide("viewer", "systemd_logs", {"unit": "toolgate"})
	codes(d) == ["not_allowed"]
	contains(d.reasons[0].message, "unit `toolgate.service`")
	decide("viewer", "systemd_logs", {"unit": "nginx"}).allow
	decide("admin", "systemd_logs", {"unit": "toolgate.service"}).allow
}

test_the_defaults_keep_container_logs_from_viewers if {
	codes(decide("viewer", "docker_logs", {"container": "web"})) == ["not_allowed"]
	codes(listing("viewer", "docker_logs")) == ["not_allowed"]
	decide("operator", "docker_logs", {"container": "web"}).allow
	listing("operator", "docker_logs").allow
}

# Pinned lists, not the shipped ones: an operator who lists units for operators keeps this test.
admins_only := {"operator": [], "admin": ["*"]}

test_operators_restart_nothing_without_a_list_of_their_own if {
	codes(decide("operator", "systemd_restart", {"unit": "nginx"})) == ["not_allowed", "role_insufficient"] with data.host.services.manage as admins_only
	codes(decide("operator", "docker_restart", {"container": "web"})) == ["not_allowed", "role_insufficient"] with data.host.containers.manage as admins_only
	codes(listing("operator", "systemd_restart")) == ["not_allowed", "role_insufficient"] with data.host.services.manage as admins_only
}

test_operators_restart_the_units_listed_for_them if {
	d := decide("operator", "systemd_restart", {"unit": "web-1"}) with data.host.services.manage as operators
	d.allow
	d.requirements == ["justification", "rollback", "verify"]
	listing("operator", "systemd_restart").allow with data.host.services.manage as operators
	refused := decide("operator", "systemd_restart", {"unit": "nginx"}) with data.host.services.manage as operators
	codes(refused) == ["not_allowed"]
	contains(refused.reasons[0].message, "may not change unit `nginx.service`")
	decide("admin", "systemd_restart", {"unit": "nginx"}).allow with data.host.services.manage as operators
	codes(decide("viewer", "systemd_restart", {"unit": "web-1"})) == ["not_allowed", "role_insufficient"] with data.host.services.manage as operators
}

test_operators_restart_the_containers_listed_for_them if {
	decide("operator", "docker_restart", {"container": "shop-api"}).allow with data.host.containers.manage as operator_containers
	codes(decide("operator", "docker_restart", {"container": "db"})) == ["not_allowed"] with data.host.containers.manage as operator_containers
}

test_a_delegated_change_still_needs_its_justification if {
	d := action.decision with input as {
		"caller": {"user": "olga", "role": "operator", "auth_method": "password", "source_ip": null},
		"tool": tool("systemd_restart", "SENSITIVE"),
		"params": {"unit": "web-1"},
		"justification": null,
		"approval": "none",
		"dry_run": false,
	}
		with data.host.services.manage as operators
	codes(d) == ["justification_required"]
}

test_admins_change_only_listed_units if {
	d := decide("admin", "systemd_restart", {"unit": "ssh"})
	codes(d) == ["not_allowed"]
	contains(d.reasons[0].message, "(not in data.host.services.manage)")
}
