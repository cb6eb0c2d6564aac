//! Errors of the parsing and loading stages.
//!
//! Contract: every error has a [`Loc`]; it prints as `file:line:col: message`,
//! the message in lower case, without a final period, with user text in
//! backticks. Parsers collect all errors of a file, not only the first.

use crate::loc::Loc;
use std::fmt;

/// One problem found while reading input, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParseError {
    /// Where the problem is.
    pub loc: Loc,
    /// What was being parsed, what was expected and what was found.
    pub message: String,
}

impl ParseError {
    /// An error at `loc` with `message`.
    pub fn new(loc: Loc, message: impl Into<String>) -> Self {
        ParseError { loc, message: message.into() }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Loc's Display already prints file:line:col.
        write!(f, "{}: {}", self.loc, self.message)
    }
}

impl std::error::Error for ParseError {}

/// All the problems of one input, in the order they were found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParseErrors(pub Vec<ParseError>);

impl ParseErrors {
    /// True when no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Record one more problem.
    pub fn push(&mut self, e: ParseError) {
        self.0.push(e);
    }
}

impl fmt::Display for ParseErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseErrors {}

impl From<ParseError> for ParseErrors {
    fn from(e: ParseError) -> Self {
        ParseErrors(vec![e])
    }
}

/// An impossible state reached inside natpath: a bug, never the user's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Internal(pub &'static str);

impl fmt::Display for Internal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "internal error (a natpath bug): {}", self.0)
    }
}

impl std::error::Error for Internal {}
