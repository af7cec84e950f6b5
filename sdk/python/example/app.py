"""A Toolgate plugin in Python, built with componentize-py against the `plugin` world.

Two READ tools: `py_count_words` (no capability) and `py_read_note` (`workspace-read`). Rust
plugins get manifests, schemas and dispatch from `toolgate-sdk`; here the same is done by hand
in a few lines: a table of tools, hand-written JSON Schemas, and errors raised as `Err(...)`.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.exports.tool import InvokeResult, Manifest, ToolSpec, Verdict
from wit_world.imports import log, workspace
from wit_world.imports.types import (
    Capability_WorkspaceRead,
    Category,
    Error_Failed,
    Error_InvalidParams,
)

SCHEMA = "https://json-schema.org/draft/2020-12/schema"


def schema(properties, required):
    return json.dumps({"$schema": SCHEMA, "type": "object", "properties": properties,
                       "required": required, "additionalProperties": False})


def count_words(params):
    text = params["text"]
    return {"words": len(text.split()), "chars": len(text)}


def read_note(params):
    path = params["path"]
    log.log(log.Level.INFO, "reading a note", [("path", path)])
    content = workspace.read(path)  # a host `error` arrives as `Err(...)` and passes through
    try:
        return {"path": path, "text": content.decode("utf-8")}
    except UnicodeDecodeError as e:
        raise Err(Error_Failed(f"`{path}` is not UTF-8 text: {e}"))


# name -> (description, category, capabilities, params schema, output schema, function)
TOOLS = {
    "py_count_words": (
        "Counts the words and characters of a text (a Python tool).",
        Category.READ,
        [],
        schema({"text": {"type": "string", "description": "Any text."}}, ["text"]),
        schema({"words": {"type": "integer"}, "chars": {"type": "integer"}}, ["words", "chars"]),
        count_words,
    ),
    "py_read_note": (
        "Reads a UTF-8 file of the workspace (a Python tool).",
        Category.READ,
        [Capability_WorkspaceRead()],
        schema({"path": {"type": "string", "description": "Workspace-relative path."}}, ["path"]),
        schema({"path": {"type": "string"}, "text": {"type": "string"}}, ["path", "text"]),
        read_note,
    ),
}


def find(tool):
    if tool not in TOOLS:
        raise Err(Error_InvalidParams(f"plugin `python_example` has no tool `{tool}`"))
    return TOOLS[tool]


class Tool(wit_world.exports.Tool):
    def get_manifest(self) -> Manifest:
        specs = [ToolSpec(name, desc, cat, params, output, False, False, caps)
                 for name, (desc, cat, caps, params, output, _) in TOOLS.items()]
        return Manifest("python_example", "0.1.0", specs)

    def invoke(self, tool: str, params: str) -> InvokeResult:
        run = find(tool)[5]
        try:
            parsed = json.loads(params)
        except ValueError as e:
            raise Err(Error_InvalidParams(f"`params`: {e}"))
        return InvokeResult(json.dumps(run(parsed)), None)

    def verify(self, tool: str, params: str, output: str) -> Verdict:
        find(tool)
        raise Err(Error_InvalidParams(f"tool `{tool}` has no verify"))

    def rollback(self, tool: str, undo: str) -> str:
        find(tool)
        raise Err(Error_InvalidParams(f"tool `{tool}` has no rollback"))
