//! The word cursor that option parsers read their values from, and the
//! error a rule line produces.
//!
//! Contract: never panics; every error carries the byte offset of the word
//! it is about (or the end of the line), which the caller turns into a
//! column.

use super::lex::Word;

/// One problem in a line: where (byte offset) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineError {
    /// Byte offset in the line.
    pub at: usize,
    /// The message (lower case, user text in backticks).
    pub msg: String,
    /// True when the problem is that the dump is IPv6 (reported once per file).
    pub ipv6: bool,
}

impl LineError {
    /// An error at byte offset `at`.
    pub fn new(at: usize, msg: impl Into<String>) -> Self {
        LineError { at, msg: msg.into(), ipv6: false }
    }

    /// The IPv6 error at `at`, about `what`.
    pub fn ipv6(at: usize, what: &str) -> Self {
        LineError {
            at,
            msg: format!("ip6tables dumps are not supported: {what}; natpath models IPv4 only"),
            ipv6: true,
        }
    }
}

/// Shorthand for results of this stage.
pub(crate) type Res<T> = Result<T, LineError>;

/// User text shown in a message: control characters escaped, long text
/// cut, so a message stays one readable line.
pub(crate) fn show(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= 60 {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The words of a line after the command, consumed left to right.
pub(crate) struct Cursor<'w, 'a> {
    words: &'w [Word<'a>],
    pos: usize,
    /// Byte offset of the end of the line (for "found end of line").
    pub end: usize,
}

impl<'w, 'a> Cursor<'w, 'a> {
    /// A cursor over `words` of a line `end` bytes long.
    pub fn new(words: &'w [Word<'a>], end: usize) -> Self {
        Cursor { words, pos: 0, end }
    }

    /// The next word without consuming it.
    pub fn peek(&self) -> Option<&'w Word<'a>> {
        self.words.get(self.pos)
    }

    /// Consume and return the next word.
    pub fn bump(&mut self) -> Option<&'w Word<'a>> {
        let w = self.words.get(self.pos)?;
        self.pos += 1;
        Some(w)
    }

    /// The value of option `opt`, which must be `what`. A missing value and
    /// the intrapositioned `--opt ! value` that iptables 1.8 refuses are
    /// errors.
    pub fn value(&mut self, opt: &str, what: &str) -> Res<&'w Word<'a>> {
        match self.peek() {
            None => Err(LineError::new(self.end, format!("expected {what} after `{opt}`, found end of line"))),
            Some(w) if w.as_str() == "!" && !w.quoted => {
                let next = self.words.get(self.pos + 1).map(|n| n.as_str()).unwrap_or("...");
                Err(LineError::new(
                    w.start,
                    format!(
                        "expected {what} after `{opt}`, found `!`: iptables 1.8 refuses intrapositioned negation, write `! {opt} {}`",
                        show(next)
                    ),
                ))
            }
            Some(w) => {
                self.pos += 1;
                Ok(w)
            }
        }
    }
}

/// "expected WHAT after `OPT`, found `VALUE`" at the value's word.
pub(crate) fn bad(w: &Word<'_>, opt: &str, what: &str) -> LineError {
    LineError::new(w.start, format!("expected {what} after `{opt}`, found `{}`", show(w.as_str())))
}

/// Like [`bad`], with a reason after a colon.
pub(crate) fn bad_because(w: &Word<'_>, opt: &str, what: &str, why: &str) -> LineError {
    LineError::new(w.start, format!("expected {what} after `{opt}`, found `{}`: {why}", show(w.as_str())))
}

/// The error for an option given twice in one module.
pub(crate) fn twice(opt: &Word<'_>) -> LineError {
    LineError::new(opt.start, format!("`{}` can only be given once", opt.as_str()))
}

/// The error for `!` before an option that cannot be negated.
pub(crate) fn no_neg(opt: &Word<'_>) -> LineError {
    LineError::new(opt.start, format!("`!` cannot be used before `{}`", opt.as_str()))
}
