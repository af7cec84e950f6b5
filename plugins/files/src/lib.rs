//! Built-in plugin `files`: read, list and write files inside the workspace, through the
//! `workspace` host interface (the host owns the directory; the plugin sees relative paths only).
//!
//! # Layout
//! - this file: the three tools;
//! - `path`: the workspace path rules every parameter is checked against first.

pub mod path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use toolgate_sdk::prelude::*;
use toolgate_sdk::workspace::{self, EntryKind};

use crate::path::Target;

/// Most bytes of a file `read_file` returns.
pub const MAX_READ: usize = 1024 * 1024;

toolgate_sdk::plugin!(name = "files", tools = [ReadFile, ListDir, WriteFile]);

/// How file content is carried in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// UTF-8 text as is.
    Text,
    /// Bytes that are not UTF-8, in standard base64.
    Base64,
}

/// File content as it crosses JSON: text when it is UTF-8, base64 otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Content {
    /// How `data` is encoded.
    pub encoding: Encoding,
    /// The content.
    pub data: String,
}

impl Content {
    /// `bytes` as text when they are UTF-8, else as base64.
    pub fn of(bytes: Vec<u8>) -> Self {
        match String::from_utf8(bytes) {
            Ok(text) => Self { encoding: Encoding::Text, data: text },
            Err(e) => Self { encoding: Encoding::Base64, data: BASE64.encode(e.into_bytes()) },
        }
    }

    /// The bytes back.
    pub fn bytes(&self) -> Result<Vec<u8>, Error> {
        match self.encoding {
            Encoding::Text => Ok(self.data.clone().into_bytes()),
            Encoding::Base64 => BASE64
                .decode(&self.data)
                .map_err(|e| Error::invalid_params(format!("`undo.previous.data`: not base64: {e}"))),
        }
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Parameters naming one file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PathParams {
    /// Path relative to the workspace root, e.g. `config/app.toml`.
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
}

/// Output of `read_file`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReadOutput {
    /// The path, normalised.
    pub path: String,
    /// Size of the whole file in bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the whole file.
    pub sha256: String,
    /// The content (the first 1 MiB when `truncated`).
    #[serde(flatten)]
    pub content: Content,
    /// True when the file is larger than 1 MiB and `data` holds its beginning only.
    pub truncated: bool,
}

/// `read_file`: the content of a workspace file.
pub struct ReadFile;

impl Tool for ReadFile {
    const NAME: &'static str = "read_file";
    const DESCRIPTION: &'static str =
        "Reads a file inside the workspace (at most 1 MiB returned); text as is, other bytes as base64.";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::WorkspaceRead];
    type Params = PathParams;
    type Output = ReadOutput;

    fn invoke(params: PathParams) -> Result<ReadOutput, Error> {
        let path = path::validate("path", &params.path, Target::File)?;
        let bytes = workspace::read(&path)?;
        Ok(read_output(path, bytes))
    }
}

/// The `read_file` document of `bytes`, cut at [`MAX_READ`] without splitting a UTF-8 character.
fn read_output(path: String, bytes: Vec<u8>) -> ReadOutput {
    let size = bytes.len() as u64;
    let sha256 = sha256_hex(&bytes);
    let truncated = bytes.len() > MAX_READ;
    let content = match String::from_utf8(bytes) {
        Ok(mut text) => {
            let mut end = text.len().min(MAX_READ);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            Content { encoding: Encoding::Text, data: text }
        }
        Err(e) => {
            let mut bytes = e.into_bytes();
            bytes.truncate(MAX_READ);
            Content::of(bytes)
        }
    };
    ReadOutput { path, size, sha256, content, truncated }
}

/// Parameters of `list_dir`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Directory relative to the workspace root; `.` (the default) is the root.
    #[serde(default = "root")]
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
}

fn root() -> String {
    ".".to_owned()
}

/// The kind of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (not followed).
    Symlink,
    /// A socket, device or fifo.
    Other,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Entry {
    /// File name.
    pub name: String,
    /// What it is.
    pub kind: Kind,
    /// Size in bytes (0 for directories).
    pub size: u64,
}

/// Output of `list_dir`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListOutput {
    /// The directory, normalised.
    pub path: String,
    /// Its entries, sorted by name.
    pub entries: Vec<Entry>,
}

/// `list_dir`: the entries of a workspace directory.
pub struct ListDir;

impl Tool for ListDir {
    const NAME: &'static str = "list_dir";
    const DESCRIPTION: &'static str = "Lists a directory inside the workspace: name, kind and size of each entry.";
    const CATEGORY: Category = Category::Read;
    const CAPABILITIES: &'static [Capability] = &[Capability::WorkspaceRead];
    type Params = ListParams;
    type Output = ListOutput;

    fn invoke(params: ListParams) -> Result<ListOutput, Error> {
        let path = path::validate("path", &params.path, Target::Dir)?;
        let entries = workspace::list(&path)?
            .into_iter()
            .map(|e| Entry {
                name: e.name,
                kind: match e.kind {
                    EntryKind::File => Kind::File,
                    EntryKind::Directory => Kind::Directory,
                    EntryKind::Symlink => Kind::Symlink,
                    EntryKind::Other => Kind::Other,
                },
                size: e.size,
            })
            .collect();
        Ok(ListOutput { path, entries })
    }
}

/// Parameters of `write_file`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    /// Path relative to the workspace root; parent directories are created.
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
    /// The new content, as UTF-8 text.
    pub content: String,
}

/// Output of `write_file`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WriteOutput {
    /// The path, normalised.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
    /// Lowercase hex sha256 of what was written.
    pub sha256: String,
    /// True when the file did not exist before.
    pub created: bool,
}

/// What `rollback` needs: the previous content, or its absence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WriteUndo {
    /// The path, normalised.
    pub path: String,
    /// The content before the write; `None` when the file did not exist.
    pub previous: Option<Content>,
}

/// Output of a `write_file` rollback.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WriteRollback {
    /// The path.
    pub path: String,
    /// `restored` (previous content written back) or `removed` (the file did not exist before).
    pub action: String,
    /// sha256 of the restored content, when restored.
    pub sha256: Option<String>,
}

/// `write_file`: replace a workspace file; verified by its sha256, rolled back by writing the
/// previous content back or removing a file that did not exist.
pub struct WriteFile;

impl Tool for WriteFile {
    const NAME: &'static str = "write_file";
    const DESCRIPTION: &'static str = "Writes a text file inside the workspace. Verify compares its sha256 with the content's; rollback restores the previous content or removes a new file.";
    const CATEGORY: Category = Category::Sensitive;
    const CAPABILITIES: &'static [Capability] = &[Capability::WorkspaceRead, Capability::WorkspaceWrite];
    const SUPPORTS_VERIFY: bool = true;
    type Params = WriteParams;
    type Output = WithUndo<WriteOutput, WriteUndo>;

    fn invoke(params: WriteParams) -> Result<Self::Output, Error> {
        let path = path::validate("path", &params.path, Target::File)?;
        let previous = workspace::write(&path, params.content.as_bytes())?;
        let output = WriteOutput {
            path: path.clone(),
            bytes: params.content.len() as u64,
            sha256: sha256_hex(params.content.as_bytes()),
            created: previous.is_none(),
        };
        Ok(WithUndo::new(output, WriteUndo { path, previous: previous.map(Content::of) }))
    }

    fn verify(params: WriteParams, _output: WriteOutput) -> Result<Verdict, Error> {
        let path = path::validate("path", &params.path, Target::File)?;
        let want = sha256_hex(params.content.as_bytes());
        let found = sha256_hex(&workspace::read(&path)?);
        Ok(if found == want {
            Verdict::pass(format!("`{path}` has sha256 {want}, as written"))
        } else {
            Verdict::fail(format!("`{path}` has sha256 {found}, expected {want}"))
        })
    }

    fn rollback(undo: WriteUndo) -> Result<serde_json::Value, Error> {
        // The undo record came back from storage: check it as if a caller had typed it.
        let path = path::validate("undo.path", &undo.path, Target::File)?;
        let restored = match undo.previous {
            Some(previous) => {
                let bytes = previous.bytes()?;
                workspace::write(&path, &bytes)?;
                WriteRollback { path, action: "restored".into(), sha256: Some(sha256_hex(&bytes)) }
            }
            None => {
                workspace::remove(&path)?;
                WriteRollback { path, action: "removed".into(), sha256: None }
            }
        };
        serde_json::to_value(restored).map_err(|e| Error::failed(format!("cannot encode the rollback output: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)] // a test that panics is a failing test
mod tests {
    use super::*;

    #[test]
    fn content_is_text_when_utf8_and_base64_otherwise_and_comes_back_intact() {
        let text = Content::of("port = 8080\n".into());
        assert_eq!(text.encoding, Encoding::Text);
        assert_eq!(text.bytes().expect("text"), b"port = 8080\n");
        let binary = Content::of(vec![0x89, b'P', b'N', b'G', 0xff, 0]);
        assert_eq!(binary.encoding, Encoding::Base64);
        assert_eq!(binary.data, "iVBOR/8A");
        assert_eq!(binary.bytes().expect("base64"), [0x89, b'P', b'N', b'G', 0xff, 0]);
        let broken = Content { encoding: Encoding::Base64, data: "not base64!".into() };
        assert!(matches!(broken.bytes(), Err(Error::InvalidParams(_))));
    }

    #[test]
    fn reads_are_capped_without_splitting_a_character_and_hash_the_whole_file() {
        let big = "é".repeat(MAX_READ); // twice the cap in bytes
        let out = read_output("big.txt".into(), big.clone().into_bytes());
        assert!(out.truncated);
        assert_eq!(out.size, 2 * MAX_READ as u64);
        assert_eq!(out.content.data.len(), MAX_READ);
        assert_eq!(out.sha256, sha256_hex(big.as_bytes()));
        let small = read_output("a.txt".into(), b"hello".to_vec());
        assert!(!small.truncated);
        assert_eq!(small.sha256, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    }

    #[test]
    fn the_undo_record_round_trips_through_json() {
        let undo = WriteUndo { path: "a.bin".into(), previous: Some(Content::of(vec![0xfe, 0xff])) };
        let json = serde_json::to_string(&undo).expect("json");
        let back: WriteUndo = serde_json::from_str(&json).expect("back");
        assert_eq!(back.previous.expect("previous").bytes().expect("bytes"), [0xfe, 0xff]);
        let absent: WriteUndo = serde_json::from_str(r#"{"path":"new.txt","previous":null}"#).expect("absent");
        assert_eq!(absent.previous, None);
    }

    #[test]
    fn bad_paths_are_refused_before_the_workspace_is_touched() {
        // Natively no host exists: reaching it would panic, so an `Err` proves nothing ran.
        for p in ["../..", "/etc/shadow", "a\nb", "$(id)/../../x"] {
            let path_only = serde_json::json!({ "path": p }).to_string();
            let with_content = serde_json::json!({ "path": p, "content": "x" }).to_string();
            for (tool, params) in [("read_file", &path_only), ("list_dir", &path_only), ("write_file", &with_content)] {
                let err = PLUGIN.invoke(tool, params);
                let Err(err) = err else { panic!("{tool} accepted {p:?}") };
                assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`path`")), "{tool} {p:?}: {err}");
            }
        }
        let err = PLUGIN.rollback("write_file", r#"{"path":"../outside","previous":null}"#).expect_err("undo");
        assert!(matches!(&err, Error::InvalidParams(m) if m.contains("`undo.path`")), "{err}");
    }
}
