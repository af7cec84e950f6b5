# The `exec` decision point: may this plugin, for this tool and caller, run this argv under this
# sandbox profile? Defence in depth: a compromised plugin runs only what `data.tools` lists.
# Input: the `ExecInput` document (see policies/README.md). Output: `decision`.
package toolgate.exec

import data.toolgate.commands

decision := {
	"allow": count(deny) == 0,
	"reasons": [r | some code in sort({d.code | some d in deny}); some r in deny; r.code == code],
	"requirements": [],
}

deny contains {"code": "tool_unlisted", "message": msg} if {
	not data.tools[input.tool.name]
	msg := sprintf("tool %q has no exec allowlist", [input.tool.name])
}

deny contains {"code": "plugin_mismatch", "message": msg} if {
	expected := tool.plugin
	expected != input.tool.plugin
	msg := sprintf("tool %q belongs to plugin %q, not %q", [input.tool.name, expected, input.tool.plugin])
}

deny contains {"code": "profile_not_allowed", "message": msg} if {
	tool
	not profile_allowed
	msg := sprintf("tool %q may not use sandbox profile %q", [input.tool.name, input.profile])
}

# A tool with per-role lists (`commands`): the argv must match one of the caller's role or below.
deny contains {"code": "command_not_allowed", "message": msg} if {
	tool
	not classed
	not command_allowed
	msg := sprintf("role %q may not run `%s` for tool %q", [input.caller.role, concat(" ", input.argv), input.tool.name])
}

# A tool whose category follows its command (`classes`): every flag allowlisted for the program,
# the command classified, a class the caller's role may run, and not above the category the
# action was decided at (`input.tool.category`).
deny contains {"code": "flag_not_allowed", "message": msg} if {
	classed
	some flag in commands.unknown_flags(input.tool.name, input.argv)
	msg := commands.flag_message(input.tool.name, input.argv[0], flag)
}

deny contains {"code": "command_not_allowed", "message": msg} if {
	classed
	count(commands.unknown_flags(input.tool.name, input.argv)) == 0
	not commands.class(input.tool.name, input.argv)
	msg := sprintf("`%s` is not a command tool %q may run", [concat(" ", input.argv), input.tool.name])
}

deny contains {"code": "command_not_allowed", "message": msg} if {
	classed
	class := commands.class(input.tool.name, input.argv)
	not role_runs(class)
	msg := sprintf("role %q may not run %s commands such as `%s`", [input.caller.role, class, concat(" ", input.argv)])
}

deny contains {"code": "category_exceeded", "message": msg} if {
	classed
	class := commands.class(input.tool.name, input.argv)
	not commands.within(class, input.tool.category)
	msg := sprintf("`%s` is a %s command, above the %s category this call was decided at", [concat(" ", input.argv), class, input.tool.category])
}

tool := data.tools[input.tool.name]

classed if is_object(tool.classes)

# Negated above: `not x in undefined` (an unknown role, an entry without `profiles`) would be
# undefined, never a denial.
role_runs(class) if class in data.roles[input.caller.role].categories

profile_allowed if input.profile in tool.profiles

# A role may run its own commands and those of every role below it.
command_allowed if {
	rank := data.roles[input.caller.role].rank
	some role, patterns in tool.commands
	data.roles[role].rank <= rank
	some pattern in patterns
	commands.argv_matches(pattern, input.argv)
}
