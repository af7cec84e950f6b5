# The `action` decision point: may this caller run this tool now?
# Input: the `ActionInput` document (see policies/README.md). Output: `decision`.
package toolgate.action

import data.toolgate.commands
import data.toolgate.scopes

# The decision document the host reads. A denial always carries at least one reason. `category`
# is the category the call was decided at (the host runs it, and checks its commands, at that
# category); `null` when the call's command could not be classified.
decision := {
	"allow": count(deny) == 0,
	"reasons": [r | some code in sort({d.code | some d in deny}); some r in deny; r.code == code],
	"requirements": sort([r | some r in requirements]),
	"category": decided_category,
}

default decided_category := null

decided_category := category

# The call's category: the tool's, or, for a tool whose category follows the command it runs
# (`run_command`), the class of that command (`input.command`, the argv of its command line).
category := input.tool.category if not commands.classified(input.tool)

category := commands.class(input.tool.name, input.command) if {
	commands.classified(input.tool)
	has_command
}

# A command tool's call whose command is refused (see the denials below): it has no category, and
# only that refusal is reported.
unclassified if {
	commands.classified(input.tool)
	not category
}

# Listing the tools one may run (a dry run without a command line): the tool's lowest class.
category := commands.lowest_class(input.tool.name) if {
	commands.classified(input.tool)
	input.dry_run
	not has_command
}

# Each denial: a stable reason code and a human message.
deny contains {"code": "role_insufficient", "message": msg} if {
	c := category
	not may_run(c)
	msg := role_message(c)
}

# A tool using a host capability that `data.capabilities` reserves to some roles (viewers never
# get a tool that writes the workspace or manages containers, whatever category it declares).
deny contains {"code": "capability_not_allowed", "message": msg} if {
	may_run(category)
	some capability, reserved in data.capabilities
	capability in input.tool.capabilities
	not reserved_for_role(reserved)
	msg := sprintf("role %q may not run tools that use `%s`", [input.caller.role, capability])
}

# A command line with a flag its program does not allow, or that no class of the tool lists.
deny contains {"code": "flag_not_allowed", "message": msg} if {
	commands.classified(input.tool)
	has_command
	some flag in commands.unknown_flags(input.tool.name, input.command)
	msg := commands.flag_message(input.tool.name, input.command[0], flag)
}

deny contains {"code": "command_not_allowed", "message": msg} if {
	commands.classified(input.tool)
	has_command
	count(commands.unknown_flags(input.tool.name, input.command)) == 0
	not commands.class(input.tool.name, input.command)
	msg := sprintf("`%s` is not a command tool %q may run", [concat(" ", input.command), input.tool.name])
}

deny contains {"code": "command_not_allowed", "message": msg} if {
	commands.classified(input.tool)
	not has_command
	not input.dry_run
	msg := sprintf("tool %q needs a command line", [input.tool.name])
}

# A tool acting on one named unit, container or package (`data.tools.<tool>.scope`: the kind,
# the access and the parameter that names it): the target must be in the caller's scope
# (scopes.rego), whatever the category lets the role run.
scope := data.tools[input.tool.name].scope

target := scopes.canonical(scope.kind, input.params[scope.param]) if is_string(input.params[scope.param])

deny contains {"code": "not_allowed", "message": msg} if {
	t := target
	not scopes.allowed(scope.kind, scope.access, input.caller.role, t)
	msg := sprintf("role %q may not %s %s `%s` (not in data.host.%s.%s)", [input.caller.role, scope_verb[scope.access], scope_noun[scope.kind], t, scope.kind, scope.access])
}

# Without a target (a dry run listing the tools): offered only to a role with a list for it.
deny contains {"code": "not_allowed", "message": msg} if {
	scope
	not target
	not scopes.has_list(scope.kind, scope.access, input.caller.role)
	msg := sprintf("role %q has no %s it may %s (data.host.%s.%s is empty for it)", [input.caller.role, scope_noun[scope.kind], scope_verb[scope.access], scope.kind, scope.access])
}

scope_verb := {"read": "read", "logs": "read the logs of", "manage": "change"}

scope_noun := {"services": "unit", "containers": "container", "packages": "package"}

# A role runs the calls of the categories it has, and the changes its own scope lists name (an
# operator restarting the units `data.host.services.manage.operator` lists, at the tool's
# category and with its requirements).
may_run(c) if role_runs(c)

may_run(_) if scopes.delegated(scope.kind, scope.access, input.caller.role)

deny contains {"code": "justification_required", "message": msg} if {
	not unclassified
	"justification" in needed
	not justified
	msg := sprintf("%s tools need a justification of at least %d characters", [shown_category, min_len])
}

deny contains {"code": "approval_required", "message": msg} if {
	not unclassified
	"approval" in needed
	input.approval in {"none", "pending"}
	msg := sprintf("%s tools need the approval of a second admin", [shown_category])
}

deny contains {"code": "approval_rejected", "message": "the approval for this call was rejected"} if {
	"approval" in needed
	input.approval == "rejected"
}

deny contains {"code": "approval_expired", "message": "the approval for this call expired"} if {
	"approval" in needed
	input.approval == "expired"
}

# What must also happen when the action runs, by category.
requirements contains r if some r in needed

needed := category_requirements if not rollback

# Undoing a call needs a justification, never an approval: it restores what was before.
needed := ["justification"] if rollback

# A rollback of an earlier action (`input.rollback`): only `data.rollback.roles` may ask for one.
rollback if is_object(input.rollback)

deny contains {"code": "role_insufficient", "message": msg} if {
	rollback
	not may_roll_back
	msg := sprintf("role %q may not roll back actions", [input.caller.role])
}

may_roll_back if input.caller.role in data.rollback.roles

# Helpers negated above: `not x in undefined` would be undefined, so never deny (fail open).
role_runs(c) if c in data.roles[input.caller.role].categories

has_command if is_array(input.command)

reserved_for_role(reserved) if input.caller.role in reserved.roles

# An unknown category requires everything, so that a typo cannot weaken the policy.
default category_requirements := ["justification", "verify", "rollback", "approval"]

category_requirements := data.categories[category].requirements

role_message(c) := sprintf("role %q may not run %s tools", [input.caller.role, c]) if not commands.classified(input.tool)

role_message(c) := sprintf("role %q may not run %s commands such as `%s`", [input.caller.role, c, concat(" ", input.command)]) if {
	commands.classified(input.tool)
	has_command
}

role_message(c) := sprintf("role %q may not run %s commands of tool %q", [input.caller.role, c, input.tool.name]) if {
	commands.classified(input.tool)
	not has_command
}

default shown_category := "unclassified"

shown_category := category

min_len := data.settings.min_justification_len

justified if {
	is_string(input.justification)
	count(trim_space(input.justification)) >= min_len
}
