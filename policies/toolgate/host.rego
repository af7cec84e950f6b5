# The `host` decision point: may this plugin, for this tool and caller, make this call on the
# host's systemd (`services`) or package manager (`packages`), on these units or packages?
# Decided before any D-Bus traffic; polkit on the host decides again (deploy/polkit).
# Input: the `HostCallInput` document (see policies/README.md). Output: `decision`.
package toolgate.host

import data.toolgate.scopes

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

# The tool lists the host calls it makes (`host_calls`, e.g. "services.restart").
deny contains {"code": "call_not_allowed", "message": msg} if {
	tool
	not call_listed
	msg := sprintf("tool %q may not call %s.%s", [input.tool.name, input.interface, input.method])
}

# Each unit or package must be in the caller's scope for this access (`read` or `manage`):
# `data.host.<interface>.<access>.<role>`, see scopes.rego.
deny contains {"code": "not_allowed", "message": msg} if {
	some object in input.objects
	not scopes.allowed(input.interface, input.access, input.caller.role, object)
	msg := sprintf("role %q may not %s %s `%s` (not in data.host.%s.%s)", [input.caller.role, input.method, noun[input.interface], object, input.interface, input.access])
}

noun := {"services": "unit", "packages": "package"}

tool := data.tools[input.tool.name]

call_listed if sprintf("%s.%s", [input.interface, input.method]) in tool.host_calls
