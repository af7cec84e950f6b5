//! Parse and compile errors as people read them: `file:line:col: message`, the source line, and a
//! caret under the column. regorus renders its own `--> file:line:col` block; we reshape it.

use std::fmt;

/// One error in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File, relative to the policy directory (empty when the engine did not say).
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub col: u32,
    /// What is wrong.
    pub message: String,
    /// The offending source line, when known.
    pub source_line: Option<String>,
}

impl Diagnostic {
    /// Reshape a regorus error message; `file` is used when the message names no location.
    pub fn from_regorus(file: &str, text: &str) -> Diagnostic {
        let mut diag =
            Diagnostic { file: file.to_owned(), line: 0, col: 0, message: text.trim().to_owned(), source_line: None };
        let lines: Vec<&str> = text.lines().collect();
        let Some(at) = lines.iter().position(|l| l.trim_start().starts_with("--> ")) else {
            return diag;
        };
        let location = lines[at].trim_start().trim_start_matches("--> ");
        // `path:line:col`, where the path itself may hold colons: split from the right.
        let mut parts = location.rsplitn(3, ':');
        let (col, line, path) = (parts.next(), parts.next(), parts.next());
        if let (Some(col), Some(line), Some(path)) = (col, line, path)
            && let (Ok(col), Ok(line)) = (col.trim().parse(), line.trim().parse())
        {
            diag.file = path.to_owned();
            diag.line = line;
            diag.col = col;
        }
        // The block is: `--> loc`, `  |`, `N | source`, `  |   ^`, `error: message`.
        diag.source_line = lines.get(at + 2).and_then(|l| l.split_once("| ")).map(|(_, src)| src.to_owned());
        let message: Vec<&str> = lines.iter().skip(at + 4).copied().collect();
        let message = message.join("\n");
        let message = message.trim();
        diag.message = message.strip_prefix("error: ").unwrap_or(message).to_owned();
        if diag.message.is_empty() {
            diag.message = text.trim().to_owned();
        }
        diag
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return if self.file.is_empty() {
                write!(f, "{}", self.message)
            } else {
                write!(f, "{}: {}", self.file, self.message)
            };
        }
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.col, self.message)?;
        if let Some(src) = &self.source_line {
            let pad = " ".repeat(self.col.saturating_sub(1) as usize);
            write!(f, "\n    {src}\n    {pad}^")?;
        }
        Ok(())
    }
}

/// Every diagnostic, one block each.
pub(super) fn render_all(diags: &[Diagnostic]) -> String {
    diags.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regorus_block_becomes_file_line_col_and_caret() {
        let mut engine = regorus::Engine::new();
        let err = engine
            .add_policy("p/a.rego".into(), "package a\n\nallow if {\n  1 ==\n}\n".into())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        let diag = Diagnostic::from_regorus("p/a.rego", &err);
        assert_eq!((diag.file.as_str(), diag.line), ("p/a.rego", 5), "{err}");
        let shown = diag.to_string();
        assert!(shown.starts_with("p/a.rego:5:1: "), "{shown}");
        assert!(shown.ends_with("}\n    ^"), "{shown}");
    }
}
