//! `sysctl net.ipv4` (or `sysctl -a`) output into [`Sysctl`]: one
//! `key = value` per line.
//!
//! Contract: never panics on any input; every problem is a [`ParseError`]
//! with file, line and column saying what was expected and what was found,
//! and every line is checked, so all errors of the file are reported. The
//! format is procps `sysctl`'s: the dotted key, ` = `, the value (which may
//! hold tabs, as `net.ipv4.ip_local_port_range`'s does); `key=value`
//! as in sysctl.conf is accepted too. procps' own complaints that land in a
//! paste (`sysctl: permission denied on key ...`, `sysctl: reading key ...`)
//! and `#` comments are skipped. The same key twice with different values
//! is an error (two captures mixed); with the same value it is harmless.

use super::iproute::lex;
use crate::error::{ParseError, ParseErrors};
use crate::loc::Loc;
use crate::netstate::Sysctl;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Parse sysctl output.
///
/// Rejects, with the line and column: a line without `=`, a key that is not
/// dotted words (letters, digits, `_`, `-`, `.`, `/`, `@`, `:`), and a key
/// given twice with different values.
pub fn parse(text: &str, file: &str) -> Result<Sysctl, ParseErrors> {
    let file: Arc<str> = Arc::from(file);
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    let mut lines_of: BTreeMap<String, u32> = BTreeMap::new();
    let mut errs = ParseErrors::default();
    for (n, line) in lex::lines(text) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') || trimmed.starts_with("sysctl: ")
        {
            continue;
        }
        let indent = u32::try_from(line.chars().take_while(|c| c.is_whitespace()).count()).unwrap_or(0);
        let col0 = indent.saturating_add(1);
        let Some((k, v)) = trimmed.split_once('=') else {
            errs.push(ParseError::new(
                Loc::new(&file, n, col0),
                format!("expected `key = value`, found `{}`", lex::show(trimmed)),
            ));
            continue;
        };
        let key = k.trim();
        let valid = !key.is_empty()
            && key.contains('.')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@' | ':' | '+'));
        if !valid {
            errs.push(ParseError::new(
                Loc::new(&file, n, col0),
                format!("expected a sysctl key such as `net.ipv4.ip_forward` before `=`, found `{}`", lex::show(key)),
            ));
            continue;
        }
        let value = v.trim().to_string();
        if let Some(old) = values.get(key) {
            if *old != value {
                let first = lines_of.get(key).copied().unwrap_or(0);
                errs.push(ParseError::new(
                    Loc::new(&file, n, col0),
                    format!("`{key}` is `{}` here but `{}` at line {first}", lex::show(&value), lex::show(old)),
                ));
            }
            continue;
        }
        lines_of.insert(key.to_string(), n);
        values.insert(key.to_string(), value);
    }
    if errs.is_empty() {
        Ok(Sysctl { values })
    } else {
        Err(errs)
    }
}
