//! iptables-save, `iptables -S`, kube-proxy restore input and greps of them.

use crate::error::ParseErrors;
use crate::ruleset::{Ruleset, TableName};

/// How to read a dump.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep unknown modules and targets as `Unsupported` instead of failing.
    pub lenient: bool,
    /// The table of a paste that has no `*table` line (`--table`).
    pub table: Option<TableName>,
}

/// Parse one dump.
pub fn parse(text: &str, file: &str, opts: &Options) -> Result<Ruleset, ParseErrors> {
    let _ = (text, file, opts);
    Err(crate::ParseError::new(crate::Loc::synthetic(), "iptables parser is not written yet").into())
}
