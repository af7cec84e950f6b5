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
