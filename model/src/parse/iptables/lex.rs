//! Splits one line of an iptables dump into words, the way
//! `iptables-restore` 1.8.9 does (`add_param_to_argv` in iptables/xshared.c).
//!
//! Contract: never panics; a word keeps the byte offset where it starts so
//! that errors point at the right column. The rules, checked against
//! iptables-restore 1.8.9:
//! - space, tab and newline separate words outside quotes; every other
//!   byte, control characters and a `\r` before the newline included, is
//!   part of a word (iptables-restore reads a CRLF dump's `COMMIT\r` as
//!   the word `COMMIT\r`, and refuses it);
//! - `"` opens a quote anywhere in a word; inside quotes `\x` stands for
//!   `x` (so `\"`, `\'` and `\\` are a quote, an apostrophe and a
//!   backslash), and the closing `"` ends the word even when no space
//!   follows (`"a"b` is two words); `""` is an empty word;
//! - outside quotes a backslash is an ordinary character, and so is `'`
//!   (single quotes do not quote);
//! - a quote still open at the end of the line takes the rest of the line
//!   and the newline that ends it into the word (iptables-restore reads the
//!   line with its newline and nothing stops the quote); such a word is the
//!   last of its line ([`split`] says so);
//! - a NUL byte outside quotes is an error here: iptables-restore reads
//!   lines as C strings and would silently drop the rest of the line.

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
    /// A NUL byte outside quotes, at this offset.
    Nul(usize),
}

/// How a line was split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// Every quote was closed.
    Closed,
    /// The last word's quote, opened at this byte offset, was still open at
    /// the end of the line: the word holds the rest of the line (and its
    /// newline, when the line has one).
    OpenQuote(usize),
}

/// True for the bytes that may end an unquoted word: separators, `"`, and
/// the other control characters (which [`split`] then looks at: only NUL
/// is an error, the rest belong to the word).
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

/// Split `line[from..]` into `out` (cleared first); offsets are into
/// `line`. `newline`: the line ends with a newline (not the end of the
/// file), which a quote left open takes into its word.
pub(crate) fn split<'a>(line: &'a str, from: usize, newline: bool, out: &mut Vec<Word<'a>>) -> Result<Split, LexError> {
    out.clear();
    let bytes = line.as_bytes();
    let n = bytes.len();
    let slice = |a: usize, b: usize| line.get(a..b).unwrap_or("");
    let tail = |i: usize| bytes.get(i..).unwrap_or(&[]);
    let mut i = from.min(n);
    // Skip separators, then read a word.
    while let Some(p) = tail(i).iter().position(|&b| !is_sep(b)) {
        i += p;
        let start = i;
        // The word runs to a separator or a quote; other control
        // characters are part of it (rare: look again past them).
        loop {
            i += find_stop(tail(i)).unwrap_or(n - i);
            match bytes.get(i) {
                Some(0) => return Err(LexError::Nul(i)),
                Some(&b) if !is_sep(b) && b != b'"' => i += 1,
                _ => break,
            }
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
                // A backslash at the end of the line escapes its newline,
                // which the open quote takes anyway.
                '\\' => match chars.next() {
                    Some((_, e)) => buf.push(e),
                    None => break,
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
            if newline {
                buf.push('\n');
            }
            out.push(Word { text: Cow::Owned(buf), start, quoted: true });
            return Ok(Split::OpenQuote(open));
        }
        out.push(Word { text: Cow::Owned(buf), start, quoted: true });
    }
    Ok(Split::Closed)
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
        split(line, 0, true, &mut v).unwrap();
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

    lex!(control_characters_are_text, "-i eth\r0 x\x01\x7fy COMMIT\r" => ["-i", "eth\r0", "x\x01\x7fy", "COMMIT\r"]);
    lex!(open_quote_takes_the_newline, "--comment \"abc -j ACCEPT" => ["--comment", "abc -j ACCEPT\n"]);
    lex!(open_quote_after_a_closed_one, "\"a\"b\" c" => ["a", "b c\n"]);
    lex!(escaped_newline, "--comment \"abc\\" => ["--comment", "abc\n"]);

    #[test]
    fn open_quotes() {
        let mut v = Vec::new();
        assert_eq!(split("--comment \"abc", 0, true, &mut v), Ok(Split::OpenQuote(10)));
        assert_eq!(v.last().unwrap().text, "abc\n");
        // The last line of a file has no newline to take.
        assert_eq!(split("--comment \"abc\\", 0, false, &mut v), Ok(Split::OpenQuote(10)));
        assert_eq!(v.last().unwrap().text, "abc");
        assert_eq!(split("\"", 0, true, &mut v), Ok(Split::OpenQuote(0)));
        assert_eq!(v.last().unwrap().text, "\n");
        assert_eq!(split("--comment \"a\rb\"", 0, true, &mut v), Ok(Split::Closed));
        assert_eq!(split("-A X\0 -j", 0, true, &mut v), Err(LexError::Nul(4)));
        assert_eq!(split("[1:2]-A X", 5, true, &mut v), Ok(Split::Closed));
        assert_eq!(v.first().map(|w| (w.start, w.text.as_ref())), Some((5, "-A")));
    }

    #[test]
    fn offsets_and_columns() {
        let mut v = Vec::new();
        split("ä -j \"x y\"", 0, true, &mut v).unwrap();
        let starts: Vec<usize> = v.iter().map(|w| w.start).collect();
        assert_eq!(starts, vec![0, 3, 6]);
        assert_eq!(column("ä -j \"x y\"", 6), 6);
        assert!(v.get(2).unwrap().quoted);
    }
}
