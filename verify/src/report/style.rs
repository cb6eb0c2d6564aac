//! Colour for the text reports, applied only when the command line says
//! so (a terminal, no `NO_COLOR`): the reports themselves, and every golden
//! file, are plain text.

/// Whether to colour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    /// Use ANSI colours.
    pub color: bool,
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

fn colour_of(word: &str) -> Option<&'static str> {
    match word {
        "holds" | "agree" | "delivered" | "pass" => Some(GREEN),
        "violated" | "differ" | "dropped" | "rejected" | "fail" => Some(RED),
        "unknown" | "not compared" | "nothing in scope" => Some(YELLOW),
        _ => None,
    }
}

impl Style {
    /// A verdict word, padded as given, in its colour.
    pub fn verdict(&self, padded: &str) -> String {
        let word = padded.trim();
        match colour_of(word).filter(|_| self.color) {
            Some(c) => padded.replacen(word, &format!("{c}{word}{RESET}"), 1),
            None => padded.to_string(),
        }
    }

    /// A trace report with each branch's outcome (`branch 1/2 (probability
    /// 1/2): delivered`) in its colour.
    pub fn paint_outcomes(&self, text: &str) -> String {
        if !self.color {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 64);
        for line in text.split_inclusive('\n') {
            match line.strip_prefix("branch ").and_then(|_| line.rsplit_once("): ")) {
                Some((head, tail)) => {
                    let word = tail.trim_end();
                    let first = word.split_whitespace().next().unwrap_or("");
                    out.push_str(head);
                    out.push_str("): ");
                    out.push_str(&self.verdict(first));
                    out.push_str(tail.get(first.len()..).unwrap_or(""));
                }
                None => out.push_str(line),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_unless_asked() {
        assert_eq!(Style::default().verdict("holds   "), "holds   ");
        assert_eq!(Style { color: true }.verdict("holds   "), "\x1b[32mholds\x1b[0m   ");
        let t = "branch 1/1 (probability 1): delivered\n  on node1\n";
        assert_eq!(Style::default().paint_outcomes(t), t);
        assert_eq!(
            Style { color: true }.paint_outcomes(t),
            "branch 1/1 (probability 1): \x1b[32mdelivered\x1b[0m\n  on node1\n"
        );
    }
}
