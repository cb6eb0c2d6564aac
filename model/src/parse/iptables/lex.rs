//! Splits one line of an iptables dump into words, the way
//! `iptables-restore` 1.8.9 does (`add_param_to_argv` in iptables/xshared.c).
//!
//! Contract: never panics; a word keeps the byte offset where it starts so
//! that errors point at the right column. The rules, checked against
//! iptables-restore 1.8.9:
//! - space, tab and newline separate words outside quotes;
//! - `"` opens a quote anywhere in a word; inside quotes `\x` stands for
//!   `x` (so `\"`, `\'` and `\\` are a quote, an apostrophe and a
//!   backslash), and the closing `"` ends the word even when no space
//!   follows (`"a"b` is two words); `""` is an empty word;
//! - outside quotes a backslash is an ordinary character, and so is `'`
//!   (single quotes do not quote);
//! - a quote still open at the end of the line is an error here (iptables
//!   1.8.9 silently swallows the rest of the line into the word).

use std::borrow::Cow;

/// One word of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word<'a> {
    /// The word with quotes and escapes removed.
    pub text: Cow<'a, str>,
    /// Byte offset of the word's first character in the line.
    pub start: usize,
    /// True when any part of the word was quoted (a quoted `"!"` is text,
    /// not negation).
    pub quoted: bool,
}

impl Word<'_> {
    /// The word as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A quote left open: the byte offset of the opening `"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unterminated(pub usize);

fn is_sep(b: u8) -> bool {
    b == b' ' || b == b'\t' || b == b'\n'
}

/// Split `line` into `out` (cleared first).
pub(crate) fn split<'a>(line: &'a str, out: &mut Vec<Word<'a>>) -> Result<(), Unterminated> {
    out.clear();
    let bytes = line.as_bytes();
    let mut i = 0usize;
    let n = bytes.len();
    while i < n {
        // Skip separators.
        while i < n && bytes.get(i).is_some_and(|&b| is_sep(b)) {
            i += 1;
        }
        if i >= n {
            break;
        }
        let start = i;
        // Fast path: a word without quotes is a slice of the line.
        let mut j = i;
        while let Some(&b) = bytes.get(j) {
            if is_sep(b) || b == b'"' {
                break;
            }
            j += 1;
        }
        if bytes.get(j) != Some(&b'"') {
            out.push(Word { text: Cow::Borrowed(line.get(start..j).unwrap_or("")), start, quoted: false });
            i = j;
            continue;
        }
        // Slow path: the word has a quote in it.
        let mut buf = String::from(line.get(start..j).unwrap_or(""));
        let mut k = j + 1; // after the opening quote
        let open = j;
        let mut closed = false;
        let mut chars = line.get(k..).unwrap_or("").char_indices();
        while let Some((off, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => buf.push(e),
                    None => return Err(Unterminated(open)),
                },
                '"' => {
                    k += off + 1;
                    closed = true;
                    break;
                }
                _ => buf.push(c),
            }
        }
        if !closed {
            return Err(Unterminated(open));
        }
        out.push(Word { text: Cow::Owned(buf), start, quoted: true });
        i = k;
    }
    Ok(())
}

/// The 1-based column, in characters, of byte offset `off` of `line`.
pub(crate) fn column(line: &str, off: usize) -> u32 {
    let prefix = line.get(..off).unwrap_or(line);
    let n = if prefix.is_ascii() { prefix.len() } else { prefix.chars().count() };
    u32::try_from(n).unwrap_or(u32::MAX).saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        let mut v = Vec::new();
        split(line, &mut v).unwrap();
        v.into_iter().map(|w| w.text.into_owned()).collect()
    }

    macro_rules! lex {
        ($name:ident, $line:expr => [$($w:expr),*]) => {
            #[test]
            fn $name() {
                let want: Vec<String> = vec![$($w.to_string()),*];
                assert_eq!(words($line), want);
            }
        };
    }

    lex!(plain, "-A X -j ACCEPT" => ["-A", "X", "-j", "ACCEPT"]);
    lex!(double_space, "--nfacct-name  foo" => ["--nfacct-name", "foo"]);
    lex!(tabs, "-A\tX \t -j" => ["-A", "X", "-j"]);
    lex!(quoted_space, "--comment \"a b\" -j" => ["--comment", "a b", "-j"]);
    lex!(escaped_quotes, r#"--comment "it\'s \"q\"""# => ["--comment", "it's \"q\""]);
    lex!(escaped_backslash, r#""back\\slash""# => ["back\\slash"]);
    lex!(escape_drops_backslash, r#""back\slash""# => ["backslash"]);
    lex!(backslash_outside_quotes, r#"x\y"# => ["x\\y"]);
    lex!(apostrophe_is_text, "x'y 'a" => ["x'y", "'a"]);
    lex!(empty_quotes, "--comment \"\" -j" => ["--comment", "", "-j"]);
    lex!(close_quote_ends_word, "\"a\"b" => ["a", "b"]);
    lex!(quote_inside_word, "ab\"c d\"" => ["abc d"]);
    lex!(unicode, "--comment \"ä ö\"" => ["--comment", "ä ö"]);

    #[test]
    fn unterminated() {
        let mut v = Vec::new();
        assert_eq!(split("--comment \"abc", &mut v), Err(Unterminated(10)));
        assert_eq!(split("\"abc\\", &mut v), Err(Unterminated(0)));
    }

    #[test]
    fn offsets_and_columns() {
        let mut v = Vec::new();
        split("ä -j \"x y\"", &mut v).unwrap();
        let starts: Vec<usize> = v.iter().map(|w| w.start).collect();
        assert_eq!(starts, vec![0, 3, 6]);
        assert_eq!(column("ä -j \"x y\"", 6), 6);
        assert!(v.get(2).unwrap().quoted);
    }
}
