# Commands: argv patterns, per-command flag allowlists, and the class of a command for the tools
# whose category follows the command they run (`data.tools[name].classes`, e.g. `run_command`).
# Used by both decision points: `action` decides the call's category from its command line before
# anything runs, `exec` checks the argv the plugin really asks for against that category.
package toolgate.commands

# Categories in order; a category not listed here has no rank, so nothing is within it.
ranks := {"READ": 0, "SAFE": 1, "MODERATE": 2, "SENSITIVE": 3, "CRITICAL": 4}

# Category `c` is `ceiling` or below it.
within(c, ceiling) if ranks[c] <= ranks[ceiling]

# Whether the category of `tool` (an input's `tool` document) follows the command it runs: its
# entry has `classes`, and it is provided by the plugin the entry names (when it names one).
classified(tool) if {
	entry := data.tools[tool.name]
	is_object(entry.classes)
	object.get(entry, "plugin", tool.plugin) == tool.plugin
}

# The flags of an argv: the arguments after the program that start with `-`.
flags(argv) := [arg | some i, arg in argv; i > 0; startswith(arg, "-")]

# The argv without its flags.
operands(argv) := [arg | some i, arg in argv; not flag_at(argv, i)]

flag_at(argv, i) if {
	i > 0
	startswith(argv[i], "-")
}

# The flags of `argv` that tool `name` does not allow for its program, as written.
unknown_flags(name, argv) := {f | some f in flags(argv); not flag_allowed(name, argv[0], f)}

# A flag listed as is (`-h`, `--no-pager`, `-lah`) ...
flag_allowed(name, program, flag) if flag in data.tools[name].flags[program]

# ... or a bundle of listed one-letter flags: `-lah` when `-l`, `-a` and `-h` are listed.
flag_allowed(name, program, flag) if {
	letters := concat("", [substring(f, 1, 1) | some f in data.tools[name].flags[program]; regex.match(`^-[A-Za-z0-9]$`, f)])
	count(letters) > 0
	regex.match(sprintf("^-[%s]+$", [letters]), flag)
}

# Why `flag` is refused, with what would be accepted.
flag_message(name, program, flag) := msg if {
	allowed := data.tools[name].flags[program]
	msg := sprintf("flag `%s` is not allowed for `%s` (allowed: %s)", [flag, program, concat(" ", sort(allowed))])
}

flag_message(name, program, flag) := msg if {
	not data.tools[name].flags[program]
	msg := sprintf("flag `%s` is not allowed: `%s` takes no flags here", [flag, program])
}

# The class of `argv` for tool `name`: the lowest category one of whose patterns matches the
# argv's operands. Undefined when a flag is not allowed or no pattern matches (unclassified).
class(name, argv) := c if {
	count(argv) > 0
	count(unknown_flags(name, argv)) == 0
	ops := operands(argv)
	found := {ranks[cat] | some cat, patterns in data.tools[name].classes; some pattern in patterns; argv_matches(pattern, ops)}
	count(found) > 0
	some c, rank in ranks
	rank == min(found)
}

# The lowest class of tool `name`: what a call is judged at before its command line is known
# (listing the tools one may run).
lowest_class(name) := c if {
	found := {ranks[cat] | some cat, patterns in data.tools[name].classes; count(patterns) > 0}
	count(found) > 0
	some c, rank in ranks
	rank == min(found)
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
