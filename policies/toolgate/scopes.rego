# Scopes: which units, containers and packages each role may read, read the logs of, or change.
# One place for both decision points: the action point checks the target a tool names in its
# parameters (`data.tools.<tool>.scope`), the host point every object a plugin asks the host for.
#
# `data.host.<kind>.<access>.<role>` is a list of names, prefixes ending in `*`, and exclusions
# starting with `!` (`["*", "!toolgate.service"]`: everything but Toolgate's own unit). A role
# has its own list and those of the roles below it; one list must allow the name on its own
# (an exclusion in a viewer's list does not bind an admin whose list names the unit).
package toolgate.scopes

# Whether `role` may `access` the object `name` of `kind`.
allowed(kind, access, role, name) if {
	rank := data.roles[role].rank
	some r, patterns in data.host[kind][access]
	data.roles[r].rank <= rank
	listed(patterns, name)
}

# Whether `role` has any list for `kind` and `access` (its own or one below it): a tool whose
# every call would be refused is not offered.
has_list(kind, access, role) if {
	rank := data.roles[role].rank
	some r, patterns in data.host[kind][access]
	data.roles[r].rank <= rank
	some p in patterns
	not startswith(p, "!")
}

# Whether `role`'s own list for `kind` and `access` names anything: the policy delegates such
# changes to the role above the categories it runs (an operator restarting the units listed
# for operators).
delegated(kind, access, role) if {
	some p in data.host[kind][access][role]
	not startswith(p, "!")
}

listed(patterns, name) if {
	some p in patterns
	not startswith(p, "!")
	matches(p, name)
	not excluded(patterns, name)
}

excluded(patterns, name) if {
	some p in patterns
	startswith(p, "!")
	matches(trim_prefix(p, "!"), name)
}

matches(pattern, name) if pattern == name

matches(pattern, name) if {
	endswith(pattern, "*")
	startswith(name, trim_suffix(pattern, "*"))
}

# The name as the host knows it: a unit without a type suffix is a `.service`, as for systemd.
canonical("services", name) := name if has_unit_suffix(name)

canonical("services", name) := concat("", [name, ".service"]) if not has_unit_suffix(name)

canonical(kind, name) := name if kind != "services"

unit_suffixes := [".service", ".socket", ".target", ".device", ".mount", ".automount", ".swap", ".timer", ".path", ".slice", ".scope"]

has_unit_suffix(name) if {
	some suffix in unit_suffixes
	endswith(name, suffix)
	count(name) > count(suffix)
}
