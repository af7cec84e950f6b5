# The `action` decision point: may this caller run this tool now?
# Input: the `ActionInput` document (see policies/README.md). Output: `decision`.
package toolgate.action

# The decision document the host reads. A denial always carries at least one reason.
decision := {
	"allow": count(deny) == 0,
	"reasons": [r | some code in sort({d.code | some d in deny}); some r in deny; r.code == code],
	"requirements": sort([r | some r in requirements]),
}

# Each denial: a stable reason code and a human message.
deny contains {"code": "role_insufficient", "message": msg} if {
	not role_allows_category
	msg := sprintf("role %q may not run %s tools", [input.caller.role, input.tool.category])
}

deny contains {"code": "justification_required", "message": msg} if {
	"justification" in category_requirements
	not justified
	msg := sprintf("%s tools need a justification of at least %d characters", [input.tool.category, min_len])
}

deny contains {"code": "approval_required", "message": msg} if {
	"approval" in category_requirements
	input.approval in {"none", "pending"}
	msg := sprintf("%s tools need the approval of a second admin", [input.tool.category])
}

deny contains {"code": "approval_rejected", "message": "the approval for this call was rejected"} if {
	"approval" in category_requirements
	input.approval == "rejected"
}

deny contains {"code": "approval_expired", "message": "the approval for this call expired"} if {
	"approval" in category_requirements
	input.approval == "expired"
}

# What must also happen when the action runs, by category.
requirements contains r if some r in category_requirements

# An unknown category requires everything, so that a typo cannot weaken the policy.
default category_requirements := ["justification", "verify", "rollback", "approval"]

category_requirements := data.categories[input.tool.category].requirements

role_allows_category if input.tool.category in data.roles[input.caller.role].categories

min_len := data.settings.min_justification_len

justified if {
	is_string(input.justification)
	count(trim_space(input.justification)) >= min_len
}
