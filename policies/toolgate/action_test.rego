# Tests of the action decision point, run by `toolgate policy test`: every role x category, and
# every reason code.
package toolgate.action_test

import data.toolgate.action

call(role, category, justification, approval) := {
	"caller": {"user": "alice", "role": role, "auth_method": "password", "source_ip": "10.0.0.1"},
	"tool": {
		"name": "some_tool", "plugin": "some_plugin", "category": category,
		"supports_verify": true, "supports_rollback": true,
	},
	"params": {},
	"justification": justification,
	"approval": approval,
	"dry_run": false,
}

good_reason := "restart after the config change in ticket OPS-42"

decide(role, category) := d if {
	d := action.decision with input as call(role, category, good_reason, "approved")
}

codes(d) := [r.code | some r in d.reasons]

# viewer: READ only.
test_viewer_read_allowed if decide("viewer", "READ").allow

test_viewer_safe_denied if codes(decide("viewer", "SAFE")) == ["role_insufficient"]

test_viewer_moderate_denied if codes(decide("viewer", "MODERATE")) == ["role_insufficient"]

test_viewer_sensitive_denied if codes(decide("viewer", "SENSITIVE")) == ["role_insufficient"]

test_viewer_critical_denied if codes(decide("viewer", "CRITICAL")) == ["role_insufficient"]

# operator: READ, SAFE, MODERATE.
test_operator_read_allowed if decide("operator", "READ").allow

test_operator_safe_allowed if decide("operator", "SAFE").allow

test_operator_moderate_allowed_with_verify if {
	d := decide("operator", "MODERATE")
	d.allow
	d.requirements == ["verify"]
}

test_operator_sensitive_denied if codes(decide("operator", "SENSITIVE")) == ["role_insufficient"]

test_operator_critical_denied if codes(decide("operator", "CRITICAL")) == ["role_insufficient"]

# admin: everything, with justification and approval where the category asks.
test_admin_read_allowed if {
	d := decide("admin", "READ")
	d.allow
	d.requirements == []
}

test_admin_safe_allowed if decide("admin", "SAFE").allow

test_admin_moderate_allowed if decide("admin", "MODERATE").allow

test_admin_sensitive_allowed_with_requirements if {
	d := decide("admin", "SENSITIVE")
	d.allow
	d.requirements == ["justification", "rollback", "verify"]
}

test_admin_critical_allowed_when_approved if {
	d := decide("admin", "CRITICAL")
	d.allow
	d.requirements == ["approval", "justification", "rollback", "verify"]
}

test_justification_required_when_missing if {
	d := action.decision with input as call("admin", "SENSITIVE", null, "none")
	not d.allow
	codes(d) == ["justification_required"]
}

test_justification_required_when_too_short if {
	d := action.decision with input as call("admin", "SENSITIVE", "  because  ", "none")
		with data.settings.min_justification_len as 10
	codes(d) == ["justification_required"]
}

test_justification_minimum_is_configurable if {
	d := action.decision with input as call("admin", "SENSITIVE", "because", "none")
		with data.settings.min_justification_len as 5
	d.allow
}

test_approval_required_when_pending if {
	d := action.decision with input as call("admin", "CRITICAL", good_reason, "pending")
	codes(d) == ["approval_required"]
}

test_approval_rejected if {
	d := action.decision with input as call("admin", "CRITICAL", good_reason, "rejected")
	codes(d) == ["approval_rejected"]
}

test_approval_expired if {
	d := action.decision with input as call("admin", "CRITICAL", good_reason, "expired")
	codes(d) == ["approval_expired"]
}

test_critical_without_anything_gives_every_reason if {
	d := action.decision with input as call("admin", "CRITICAL", "", "none")
	codes(d) == ["approval_required", "justification_required"]
}

test_unknown_role_denied if codes(decide("root", "READ")) == ["role_insufficient"]

test_unknown_category_requires_everything if {
	d := action.decision with input as call("admin", "EXTREME", "", "none")
	not d.allow
	codes(d) == ["approval_required", "justification_required", "role_insufficient"]
}

test_every_denial_has_a_message if {
	d := action.decision with input as call("viewer", "CRITICAL", "", "none")
	every r in d.reasons {
		count(r.message) > 0
	}
}

# run_command: the category follows the command it runs.
command_call(role, argv, dry_run) := {
	"caller": {"user": "bob", "role": role, "auth_method": "api_key", "source_ip": null},
	"tool": {
		"name": "run_command", "plugin": "command", "category": "MODERATE",
		"supports_verify": false, "supports_rollback": false,
	},
	"params": {"command": concat(" ", argv)},
	"command": argv,
	"justification": null,
	"approval": "none",
	"dry_run": dry_run,
}

command(role, argv) := d if {
	d := action.decision with input as command_call(role, argv, false)
}

test_viewer_runs_read_commands_as_read if {
	d := command("viewer", ["ls", "-lah", "/workspace"])
	d.allow
	d.category == "READ"
	d.requirements == []
	command("viewer", ["df", "-h"]).allow
	command("viewer", ["grep", "-c", "reset", "/var/log/app.log"]).allow
}

# The classes an operator might add to the shipped ones (which are READ commands only): the
# tests of the class mechanism use them (`with data.tools.run_command.classes as own_classes`).
own_classes := {
	"READ": [["ls", "{PATH...}"]],
	"MODERATE": [["systemctl", "restart", "{UNIT}"], ["git", "pull"]],
}

test_viewer_cannot_run_an_operator_command if {
	d := command("viewer", ["systemctl", "restart", "nginx"]) with data.tools.run_command.classes as own_classes
	d.reasons == [{"code": "role_insufficient", "message": "role \"viewer\" may not run MODERATE commands such as `systemctl restart nginx`"}]
	d.category == "MODERATE"
}

test_operator_restart_is_moderate if {
	d := command("operator", ["systemctl", "restart", "nginx"]) with data.tools.run_command.classes as own_classes
	d.allow
	d.category == "MODERATE"
	d.requirements == ["verify"]
}

# The shipped classes hold no restart or pull (the sandbox has no D-Bus or network; restarts are
# the `systemd_restart` and `docker_restart` tools): unclassified, refused for every role before
# anything runs, with no category. Counted, not checked with `every` (see commands.rego).
test_shipped_defaults_refuse_restarts_and_pulls_for_every_role if {
	roles := ["viewer", "operator", "admin"]
	removed := [["systemctl", "restart", "nginx"], ["git", "pull"]]
	refused := [[role, argv] |
		some role in roles
		some argv in removed
		d := command(role, argv)
		not d.allow
		d.category == null
		d.reasons == [{
			"code": "command_not_allowed",
			"message": sprintf("`%s` is not a command tool \"run_command\" may run", [concat(" ", argv)]),
		}]
	]
	count(refused) == count(roles) * count(removed)
}

test_unknown_flag_refused_before_anything_runs if {
	d := command("admin", ["ls", "-lahz", "/workspace"])
	codes(d) == ["flag_not_allowed"]
	contains(d.reasons[0].message, "`-lahz`")
	d.category == null
}

test_unclassified_command_refused if {
	d := command("admin", ["rm", "/etc/passwd"])
	codes(d) == ["command_not_allowed"]
	d.category == null
}

test_command_tool_needs_its_command_line if {
	d := action.decision with input as object.remove(command_call("admin", ["ls"], false), ["command"])
	codes(d) == ["command_not_allowed"]
}

test_listing_judges_a_command_tool_at_its_lowest_class if {
	d := action.decision with input as object.remove(command_call("viewer", ["ls"], true), ["command"])
	d.allow
	d.category == "READ"
}

test_other_tools_keep_their_category if {
	decide("viewer", "READ").category == "READ"
	decide("admin", "SENSITIVE").category == "SENSITIVE"
	d := action.decision with input as object.union(command_call("viewer", ["ls"], false), {"tool": {"name": "run_command", "plugin": "impostor", "category": "SAFE", "supports_verify": false, "supports_rollback": false}})
	d.category == "SAFE"
	codes(d) == ["role_insufficient"]
}

# Capabilities reserved to some roles (`data.capabilities`), whatever the tool's category.
with_capabilities(role, category, capabilities) := d if {
	base := call(role, category, good_reason, "approved")
	tool := object.union(base.tool, {"capabilities": capabilities})
	d := action.decision with input as object.union(base, {"tool": tool})
}

test_viewer_never_gets_a_tool_that_writes_or_manages if {
	codes(with_capabilities("viewer", "READ", ["workspace-read", "workspace-write"])) == ["capability_not_allowed"]
	codes(with_capabilities("viewer", "READ", ["containers-manage"])) == ["capability_not_allowed"]
	with_capabilities("viewer", "READ", ["workspace-read", "containers-read", "exec:default"]).allow
	with_capabilities("operator", "READ", ["workspace-write", "containers-manage"]).allow
	# A role refused the category is told that, not every capability on top.
	codes(with_capabilities("viewer", "SENSITIVE", ["workspace-write"])) == ["role_insufficient"]
}

# Rollbacks: decided like any call, by admins, with a justification and no approval.
rollback_of(role, category, justification) := d if {
	base := call(role, category, justification, "none")
	d := action.decision with input as object.union(base, {"rollback": {"of": "0193-action", "automatic": false}})
}

test_admin_rolls_back_with_a_justification_and_no_approval if {
	d := rollback_of("admin", "CRITICAL", good_reason)
	d.allow
	d.requirements == ["justification"]
	codes(rollback_of("admin", "SAFE", "")) == ["justification_required"]
}

test_only_admins_roll_back if {
	d := rollback_of("operator", "SAFE", good_reason)
	codes(d) == ["role_insufficient"]
	contains(d.reasons[0].message, "roll back")
}

test_who_may_roll_back_is_data if {
	base := call("admin", "SENSITIVE", good_reason, "none")
	d := action.decision with input as object.union(base, {"rollback": {"of": "0193-action", "automatic": true}})
		with data.rollback.roles as ["operator"]
	codes(d) == ["role_insufficient"]
}

test_without_rollback_roles_no_one_rolls_back if {
	base := call("admin", "SAFE", good_reason, "none")
	d := action.decision with input as object.union(base, {"rollback": {"of": "0193-action", "automatic": false}})
		with data.rollback as {}
	codes(d) == ["role_insufficient"]
}

test_unknown_role_runs_no_command if codes(command("root", ["ls"])) == ["role_insufficient"]
