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
//!   1.8.9 silently swallows the rest of the line into the word), and so is
//!   a control character outside quotes (iptables keeps it in the word; no
//!   dump has one, and a word ending in `\r` would not survive printing).

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

/// Why a line cannot be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LexError {
    /// A quote left open: the byte offset of the opening `"`.
    Unterminated(usize),
    /// A control character outside quotes (offset, byte): iptables would
    /// take it as part of a word, but no dump has one, and a word ending in
    /// `\r` could not be printed back.
    Control(usize, u8),
}

/// True for the bytes that end an unquoted word or make it an error:
/// separators, `"`, and control characters.
fn is_stop(b: u8) -> bool {
    b <= b' ' || b == b'"' || b == 0x7f
}

const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// High bit set in every byte of `x` that is zero (exact, no false
/// positives: the carry of the addition never leaves a byte).
fn zero_bytes(x: u64) -> u64 {
    let y = (x & LO7).wrapping_add(LO7);
    !(y | x | LO7)
}

/// Index of the first byte of `s` for which [`is_stop`] holds, eight bytes
/// at a time: an unquoted word is read in one pass.
fn find_stop(s: &[u8]) -> Option<usize> {
    let mut chunks = s.chunks_exact(8);
    let mut base = 0usize;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let w = u64::from_le_bytes(w);
        // Bytes below 0x21 (a borrow can only mark bytes above the first
        // true one, so the lowest mark is exact), `"` and DEL.
        let m = (w.wrapping_sub(ONES * 0x21) & !w & HIGH)
            | zero_bytes(w ^ (ONES * u64::from(b'"')))
            | zero_bytes(w ^ (ONES * 0x7f));
        if m != 0 {
            return Some(base + (m.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|&b| is_stop(b)).map(|p| base + p)
}

/// Index of the first byte of `s` equal to one of `targets`, eight bytes at
/// a time (dump lines are mostly long words and quoted comments).
pub(crate) fn find_any(s: &[u8], targets: &[u8]) -> Option<usize> {
    let mut chunks = s.chunks_exact(8);
    let mut base = 0usize;
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let w = u64::from_le_bytes(w);
        let mut m = 0u64;
        for &t in targets {
            m |= zero_bytes(w ^ (ONES * u64::from(t)));
        }
        if m != 0 {
            return Some(base + (m.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|b| targets.contains(b)).map(|p| base + p)
}

fn is_sep(b: u8) -> bool {
    (b == b' ') | (b == b'\t') | (b == b'\n')
}

/// Split `line` into `out` (cleared first).
pub(crate) fn split<'a>(line: &'a str, out: &mut Vec<Word<'a>>) -> Result<(), LexError> {
    out.clear();
    let bytes = line.as_bytes();
    let n = bytes.len();
    let slice = |a: usize, b: usize| line.get(a..b).unwrap_or("");
    let tail = |i: usize| bytes.get(i..).unwrap_or(&[]);
    let mut i = 0usize;
    // Skip separators, then read a word.
    while let Some(p) = tail(i).iter().position(|&b| !is_sep(b)) {
        i += p;
        let start = i;
        i += find_stop(tail(i)).unwrap_or(n - i);
        match bytes.get(i) {
            Some(&b) if !is_sep(b) && b != b'"' => return Err(LexError::Control(i, b)),
            _ => {}
        }
        if bytes.get(i) != Some(&b'"') {
            out.push(Word { text: Cow::Borrowed(slice(start, i)), start, quoted: false });
            continue;
        }
        // A quote at `i`. The common case, a whole word in quotes with no
        // escape (`"kubernetes service portals"`), stays a slice.
        let open = i;
        i += 1;
        let body = i;
        i += find_any(tail(i), b"\"\\").unwrap_or(n - i);
        if bytes.get(i) == Some(&b'"') && open == start {
            out.push(Word { text: Cow::Borrowed(slice(body, i)), start, quoted: true });
            i += 1;
            continue;
        }
        // Otherwise build the word: text before the quote, then the quoted
        // part with its escapes resolved.
        let mut buf = String::with_capacity(i - start + 16);
        buf.push_str(slice(start, open));
        buf.push_str(slice(body, i));
        let mut chars = line.get(i..).unwrap_or("").char_indices();
        let mut closed = false;
        while let Some((off, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => buf.push(e),
                    None => return Err(LexError::Unterminated(open)),
                },
                '"' => {
                    i += off + 1;
                    closed = true;
                    break;
                }
                _ => buf.push(c),
            }
        }
        if !closed {
            return Err(LexError::Unterminated(open));
        }
        out.push(Word { text: Cow::Owned(buf), start, quoted: true });
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
    fn find_any_is_exact() {
        let s = b"abcdefgh ijk\"lmnop\\q\x01\x00\x7f\xff";
        for (i, &b) in s.iter().enumerate() {
            assert_eq!(find_any(s, &[b]), s.iter().position(|&x| x == b), "byte {b} at {i}");
        }
        assert_eq!(find_any(b"aaaaaaaaaaaaaaaaaaa", b" "), None);
        assert_eq!(find_any(b"\x21\x20", b" "), Some(1));
    }

    #[test]
    fn find_stop_is_exact() {
        for b in 0..=255u8 {
            for at in 0..20 {
                let mut s = vec![b'a'; 20];
                if let Some(x) = s.get_mut(at) {
                    *x = b;
                }
                // A byte that matches after the first, to catch borrows.
                if let Some(x) = s.get_mut(19) {
                    *x = 0;
                }
                let want = s.iter().position(|&x| is_stop(x));
                assert_eq!(find_stop(&s), want, "byte {b} at {at}");
            }
        }
    }

    #[test]
    fn unterminated() {
        let mut v = Vec::new();
        assert_eq!(split("--comment \"abc", &mut v), Err(LexError::Unterminated(10)));
        assert_eq!(split("\"abc\\", &mut v), Err(LexError::Unterminated(0)));
        assert_eq!(split("-i eth\r0", &mut v), Err(LexError::Control(6, b'\r')));
        assert!(split("--comment \"a\rb\"", &mut v).is_ok());
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
