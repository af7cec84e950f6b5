# The `exec` decision point: may this plugin, for this tool and caller, run this argv under this
# sandbox profile? Defence in depth: a compromised plugin runs only what `data.tools` lists.
# Input: the `ExecInput` document (see policies/README.md). Output: `decision`.
package toolgate.exec

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
	not input.profile in tool.profiles
	msg := sprintf("tool %q may not use sandbox profile %q", [input.tool.name, input.profile])
}

deny contains {"code": "command_not_allowed", "message": msg} if {
	tool
	not command_allowed
	msg := sprintf("role %q may not run `%s` for tool %q", [input.caller.role, concat(" ", input.argv), input.tool.name])
}

tool := data.tools[input.tool.name]

# A role may run its own commands and those of every role below it.
command_allowed if {
	rank := data.roles[input.caller.role].rank
	some role, patterns in tool.commands
	data.roles[role].rank <= rank
	some pattern in patterns
	argv_matches(pattern, input.argv)
}

# A pattern is a list of tokens: a literal, `{KIND}` (one argument matching `data.arg_kinds[KIND]`)
# or, last only, `{KIND...}` (any number of such arguments).
#
# Matches are counted rather than checked with `every`: regorus 0.14's RVM ignores a failing
# user-function call inside `every` (it decided `cat --version` allowed); the golden cases run
# through both evaluators to keep the fast path honest.
argv_matches(pattern, argv) if {
	not is_rest(pattern[count(pattern) - 1])
	count(pattern) == count(argv)
	count([i | some i, token in pattern; token_matches(token, argv[i])]) == count(pattern)
}

argv_matches(pattern, argv) if {
	n := count(pattern) - 1
	is_rest(pattern[n])
	count(argv) >= n
	count([i | some i, token in array.slice(pattern, 0, n); token_matches(token, argv[i])]) == n
	kind := trim_suffix(trim_prefix(pattern[n], "{"), "...}")
	rest := array.slice(argv, n, count(argv))
	count([arg | some arg in rest; regex.match(data.arg_kinds[kind], arg)]) == count(rest)
}

is_rest(token) if {
	startswith(token, "{")
	endswith(token, "...}")
}

token_matches(token, arg) if {
	not startswith(token, "{")
	token == arg
}

token_matches(token, arg) if {
	startswith(token, "{")
	not endswith(token, "...}")
	kind := trim_suffix(trim_prefix(token, "{"), "}")
	regex.match(data.arg_kinds[kind], arg)
}
