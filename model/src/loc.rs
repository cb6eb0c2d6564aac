//! Source locations carried by every IR item.
//!
//! Contract: a [`Loc`] names the file, the 1-based line and the 1-based
//! column (in characters) where an item was read. Two IR items that differ
//! only in where they were read compare equal: equality of `Loc` is always
//! true, so parse -> print -> parse round trips compare the meaning, not the
//! position.

use std::fmt;
use std::sync::Arc;

/// Where an IR item or an error was found: file, line and column (1-based).
#[derive(Clone, Default, serde::Serialize)]
pub struct Loc {
    /// The file as the user named it (or a label such as `<stdin>`).
    pub file: Arc<str>,
    /// 1-based line number; 0 when the item was not read from a file.
    pub line: u32,
    /// 1-based column in characters; 0 when unknown.
    pub column: u32,
}

impl Loc {
    /// A location in `file` at `line`, `column`.
    pub fn new(file: &Arc<str>, line: u32, column: u32) -> Self {
        Loc { file: Arc::clone(file), line, column }
    }

    /// A location for items that were built in code, not read from a file.
    pub fn synthetic() -> Self {
        Loc { file: Arc::from("<generated>"), line: 0, column: 0 }
    }

    /// The same file and line at another column.
    pub fn at_column(&self, column: u32) -> Self {
        Loc { file: Arc::clone(&self.file), line: self.line, column }
    }
}

impl PartialEq for Loc {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for Loc {}

impl std::hash::Hash for Loc {
    fn hash<H: std::hash::Hasher>(&self, _state: &mut H) {}
}

impl fmt::Debug for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}
