//! `ip route show table all`.
use crate::error::ParseErrors;
use crate::netstate::Route;

/// Parse `ip route` output.
pub fn parse(text: &str, file: &str) -> Result<Vec<Route>, ParseErrors> {
    let _ = (text, file);
    Ok(Vec::new())
}
