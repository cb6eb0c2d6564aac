//! iptables-save, `iptables -S`, kube-proxy's restore input and greps of
//! them, to a [`Ruleset`].
//!
//! Contract: never panics on any input (bytes included, through
//! [`parse_bytes`]); every error names `file:line:column` and says what was
//! expected and what was found; all errors of a file are reported (up to
//! [`MAX_ERRORS`]), not just the first. What `iptables-restore` 1.8.9
//! refuses in a complete `*table` ... `COMMIT` block is an error here too
//! (a chain used but not declared, or declared after the rule that jumps
//! to it, `-N` of a chain that exists, `-X` of a chain with rules or in
//! use, an unknown module or option, a bad address, `x.x.x.x`, an
//! anonymised MAC, a garbled DNAT, `COMMIT` outside a table, an indented
//! `*`, `:`, `#` or `COMMIT` line, a line whose CRLF ending leaves a `\r`
//! in a word that must be a name or number, a counter prefix without its
//! `]` or `:`, an option given twice that its module takes once), plus a
//! jump loop that a built-in chain reaches, jumps nested more than
//! [`MAX_JUMP_DEPTH`] deep from one, and a match or target in a table or
//! a hook its kernel module refuses (`hooks`), which the kernel refuses
//! when it loads the table; and what it accepts is read as it reads
//! it (a user chain's policy word and any counters are ignored, `:NAME`
//! again empties a user chain, a table given again after its `COMMIT`
//! replaces the first block, the rest of a `*table` line is ignored, a
//! counter prefix ends at its first `]`, a quote left open takes the rest
//! of the line and its newline). verify/tests/restore_agreement.rs checks
//! this against the real iptables-restore.
//! Partial inputs are read, not refused: a paste without `*table` gets its
//! table from [`Options::table`] or by inference ([`infer`]), a block
//! without `COMMIT` (or a paste) implies the chains its rules use
//! ([`crate::ruleset::Chain::implied`]); both are recorded as
//! [`crate::ruleset::Note`]s. ip6tables dumps are refused with one clear
//! error. With [`Options::lenient`], unknown modules and targets are kept as
//! `Unsupported` instead of failing.
//!
//! Layers: [`lex`] splits a line into words as iptables-restore does;
//! [`rule`] reads one rule's options, handing module options to
//! [`matches`] and target options to [`targets`]; this file reads the
//! line structure (tables, chains, commands) and checks the chain graph.

mod args;
mod hooks;
mod infer;
mod lex;
mod matches;
mod rule;
mod targets;
mod unmodelled;
mod value;

use crate::error::{ParseError, ParseErrors};
use crate::loc::Loc;
use crate::ruleset::{Chain, Counters, Note, Policy, Rule, Ruleset, Table, TableForm, TableName, Target};
use args::{show, LineError};
use lex::Word;
use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;

#[cfg(test)]
pub(crate) use value::probability;
pub(crate) use value::{proto_name, unit_name};

/// Errors kept per file; after this many the parser stops with one more
/// error saying so (a binary or wrong file would otherwise produce one
/// error per line).
pub const MAX_ERRORS: usize = 100;

/// Longest line read (1 MiB); a longer one is an error, not a slow parse.
pub const MAX_LINE: usize = 1 << 20;

/// Added to the error of a line that ends in `\r`.
const CRLF_HINT: &str = " (the line ends in a carriage return: iptables-restore reads the `\\r` of a CRLF line ending as part of the last word and refuses the line; convert the file with `dos2unix` or `tr -d '\\r'`)";

/// iptables' refusal of `-j DROP` and `-P CHAIN DROP` in the nat table (a
/// `:CHAIN DROP` line there is accepted).
const NAT_DROP: &str =
    "expected a nat target or a jump, found `DROP`: iptables refuses DROP in the nat table (\"not intended for filtering\")";

/// The longest chain of jumps (`-j`/`-g` to user chains) from a built-in
/// chain that the kernel loads: nf_tables refuses a 16th nested jump
/// with `Too many links` when the table is committed.
pub const MAX_JUMP_DEPTH: usize = 15;

/// How to read a dump.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep unknown modules and targets as `Unsupported` instead of failing.
    pub lenient: bool,
    /// The table of a paste that has no `*table` line (`--table`).
    pub table: Option<TableName>,
}

/// The comment `iptables-nft-save` writes when the kernel also holds
/// iptables-legacy tables: their rules, which the kernel runs too, are not
/// in its output.
pub const LEGACY_WARNING: &str = "# Warning: iptables-legacy tables present";

/// The line of `text` that starts with [`LEGACY_WARNING`], if one does
/// (comments are read from the first column only, as iptables-restore
/// reads them). The one place that recognises the warning.
pub fn legacy_warning_line(text: &str) -> Option<u32> {
    let at = text.match_indices(LEGACY_WARNING).map(|(i, _)| i).find(|&i| {
        let before = text.get(..i).unwrap_or_default();
        before.is_empty() || before.ends_with('\n')
    })?;
    let newlines = text.get(..at).unwrap_or_default().bytes().filter(|&b| b == b'\n').count();
    u32::try_from(newlines).ok().map(|n| n.saturating_add(1))
}

/// Parse one dump.
pub fn parse(text: &str, file: &str, opts: &Options) -> Result<Ruleset, ParseErrors> {
    let mut p = Parser::new(file, opts);
    p.run(text);
    p.finish()
}

/// Parse one dump given as bytes: text that is not UTF-8 is an error at
/// the line and column of the first bad byte.
pub fn parse_bytes(bytes: &[u8], file: &str, opts: &Options) -> Result<Ruleset, ParseErrors> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse(text, file, opts),
        Err(e) => {
            let good = bytes.get(..e.valid_up_to()).unwrap_or(&[]);
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
            let prefix = std::str::from_utf8(good.get(line_start..).unwrap_or(&[])).unwrap_or("");
            let column = prefix.chars().count() + 1;
            let bad = bytes.get(e.valid_up_to()).copied().unwrap_or(0);
            let file: Arc<str> = Arc::from(file);
            Err(ParseError::new(
                Loc::new(&file, u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX)),
                format!("expected UTF-8 text, found byte `{bad:#04x}` (is this a binary file?)"),
            )
            .into())
        }
    }
}

/// Entry points for fuzzers (the `fuzz/` crate calls these on stable too).
pub mod fuzzing {
    use super::{parse_bytes, Options};

    /// Parse `data`; when it parses, print it and parse the print again,
    /// and say how the two differ. `Err` is a bug in natpath.
    pub fn round_trip(data: &[u8]) -> Result<(), String> {
        for lenient in [false, true] {
            let opts = Options { lenient, table: None };
            let Ok(rs) = parse_bytes(data, "fuzz", &opts) else { continue };
            let text = crate::print::iptables_save(&rs);
            match parse_bytes(text.as_bytes(), "fuzz-print", &opts) {
                Ok(again) if again == rs => {}
                Ok(again) => {
                    return Err(format!(
                        "print does not round-trip:\n--- input\n{}\n--- print\n{text}\n--- first {:?}\n--- again {:?}",
                        String::from_utf8_lossy(data),
                        rs,
                        again
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "print does not parse: {e}\n--- input\n{}\n--- print\n{text}",
                        String::from_utf8_lossy(data)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What one line asks for, kept until its segment ends (when the table of
/// a paste and whether a block is complete are known).
enum OpKind {
    /// `:NAME POLICY [p:b]` (`colon`) or `-N NAME`. `other`: the policy
    /// word when it is none of `ACCEPT`, `DROP` and `-` (with its column),
    /// which iptables-restore ignores for a user chain and refuses for a
    /// built-in one.
    Decl { policy: Option<Policy>, counters: Option<Counters>, colon: bool, other: Option<(u32, String)> },
    /// `-P NAME POLICY`.
    SetPolicy { policy: Policy, counters: Option<Counters> },
    /// `-A NAME ...` / `-I NAME [N] ...` (`insert` is the 1-based position).
    Add { rules: Vec<Rule>, target_at: Option<(u32, u32)>, insert: Option<usize> },
    /// `-X NAME`.
    Delete,
    /// `-F NAME`.
    Flush,
}

struct Op<'a> {
    chain: Cow<'a, str>,
    /// Where the chain name is.
    loc: Loc,
    kind: OpKind,
}

/// Lines between a `*table` line (or the start of a paste) and `COMMIT`.
struct Segment<'a> {
    /// The table of the `*table` line (an index into the tables); its
    /// lines are applied at once. `None` for a paste.
    header: Option<usize>,
    /// True after a `*table` line that repeats a table: its lines are skipped.
    skip: bool,
    /// Where the segment starts.
    start: Loc,
    /// A paste's lines, kept until its tables are inferred.
    ops: Vec<Op<'a>>,
    /// Errors that count only if the block turns out complete (`COMMIT`).
    pending: Vec<(Loc, String)>,
}

impl Segment<'_> {
    fn new(start: Loc) -> Self {
        Segment { header: None, skip: false, start, ops: Vec::new(), pending: Vec::new() }
    }
}

/// Chain names to indices. A name is borrowed from the dump where it was
/// first written (owned only when it was quoted or after a `-X`), so that
/// declaring a chain allocates its name once, in the IR.
type NameMap<'a, V> = HashMap<Cow<'a, str>, V, crate::hash::FastBuild>;

struct TableState<'a> {
    t: Table,
    index: NameMap<'a, usize>,
    /// The chain the last `-A` went to: a dump lists a chain's rules
    /// together, and its chains in the order they were declared, so most
    /// rules need no lookup.
    last_add: Option<usize>,
    /// Rules appended to chain `staged_for` and not yet moved there: a
    /// chain's rules come together, so its vector is allocated once at
    /// its size instead of growing (and being copied) rule by rule.
    // INVARIANT: empty when `staged_for` is `None`; moved to the chain
    // (`flush`) before any other line is applied and before `finish`.
    staged: Vec<Rule>,
    staged_for: Option<usize>,
    /// `(line, column)` of the chain name after `-j`/`-g` of each jumping
    /// rule, in line order, for errors found when the file is read.
    target_cols: Vec<(u32, u32)>,
    /// True when a headerless table's name was inferred (not given by the
    /// caller or a `*table` line).
    inferred: bool,
}

impl TableState<'_> {
    fn reindex(&mut self) {
        self.index = self.t.chains.iter().enumerate().map(|(i, c)| (Cow::Owned(c.name.clone()), i)).collect();
    }

    /// Move the staged rules to the end of their chain.
    fn flush(&mut self) {
        if let Some(i) = self.staged_for.take() {
            if let Some(c) = self.t.chains.get_mut(i) {
                if c.rules.is_empty() {
                    c.rules.reserve_exact(self.staged.len());
                }
                c.rules.append(&mut self.staged);
            }
            self.staged.clear();
        }
    }

    /// The index of chain `name`.
    fn chain_index(&mut self, name: &str) -> Option<usize> {
        if let Some(i) = self.last_add {
            for j in [i, i + 1] {
                if self.t.chains.get(j).is_some_and(|c| c.name == name) {
                    self.last_add = Some(j);
                    return Some(j);
                }
            }
        }
        let i = self.index.get(name).copied();
        self.last_add = i;
        i
    }

    /// Where the target of `rule` is written (the rule's start if unknown).
    fn target_loc(&self, rule: &Rule) -> Loc {
        let line = rule.loc.line;
        let col = self
            .target_cols
            .binary_search_by_key(&line, |(l, _)| *l)
            .ok()
            .and_then(|i| self.target_cols.get(i))
            .map_or(rule.loc.column, |(_, c)| *c);
        rule.loc.at_column(col)
    }

    fn is_builtin(&self, name: &str) -> bool {
        self.t.name.builtin_chains().contains(&name)
    }
}

struct Parser<'o, 'a> {
    file: Arc<str>,
    opts: &'o Options,
    errors: Vec<ParseError>,
    stopped: bool,
    tables: Vec<TableState<'a>>,
    seg: Option<Segment<'a>>,
    /// Scratch space of the rule parser, reused for every rule.
    mods: Vec<(matches::Builder, usize)>,
    /// The buffer a rule line is parsed into; it goes with the line's
    /// `Op` and comes back empty once the rules are in their table.
    rules: Vec<Rule>,
}

impl<'o, 'a> Parser<'o, 'a> {
    fn new(file: &str, opts: &'o Options) -> Self {
        Parser {
            file: Arc::from(file),
            opts,
            errors: Vec::new(),
            stopped: false,
            tables: Vec::new(),
            seg: None,
            mods: Vec::new(),
            rules: Vec::new(),
        }
    }

    fn loc(&self, line: u32, column: u32) -> Loc {
        Loc::new(&self.file, line, column)
    }

    fn error(&mut self, loc: Loc, msg: impl Into<String>) {
        if self.stopped {
            return;
        }
        if self.errors.len() >= MAX_ERRORS {
            self.errors.push(ParseError::new(loc, format!("too many errors: stopping after {MAX_ERRORS}")));
            self.stopped = true;
            return;
        }
        self.errors.push(ParseError::new(loc, msg));
    }

    /// Record a line error; an IPv6 dump stops the parse with that error.
    fn line_error(&mut self, line_no: u32, line: &str, e: LineError) {
        let loc = self.loc(line_no, lex::column(line, e.at));
        let mut msg = e.msg;
        if line.ends_with('\r') {
            msg.push_str(CRLF_HINT);
        }
        self.error(loc, msg);
        if e.ipv6 {
            self.stopped = true;
        }
    }

    fn run(&mut self, text: &'a str) {
        // The word buffer is reused for every line; it borrows the line only
        // while that line is read.
        let mut words: Vec<Word<'_>> = Vec::new();
        let bytes = text.as_bytes();
        let mut pos = 0usize;
        let mut i = 0usize;
        while pos <= bytes.len() {
            let rest = bytes.get(pos..).unwrap_or(&[]);
            let len = lex::find_any(rest, b"\n").unwrap_or(rest.len());
            let raw = text.get(pos..pos + len).unwrap_or("");
            pos += len + 1;
            i += 1;
            if self.stopped {
                break;
            }
            let line_no = u32::try_from(i).unwrap_or(u32::MAX);
            // A `\r` before the newline is part of the line, as
            // iptables-restore reads it (and refuses a CRLF dump).
            let line = raw;
            if line.len() > MAX_LINE {
                let loc = self.loc(line_no, 1);
                self.error(loc, format!("expected a line of at most {MAX_LINE} bytes, found {} bytes", line.len()));
                continue;
            }
            let newline = pos <= bytes.len();
            self.line(line_no, line, newline, &mut words);
        }
        self.end_segment(false);
    }

    fn line(&mut self, line_no: u32, line: &'a str, newline: bool, words: &mut Vec<Word<'a>>) {
        let body = line.trim_start_matches([' ', '\t']);
        let Some(first) = body.bytes().next() else { return };
        let indent = line.len() - body.len();
        if indent > 0 {
            // iptables-restore reads `*`, `:`, `#` and `COMMIT` lines only
            // from the first column; indented, they are read as a rule's
            // words and refused.
            let what = match first {
                b'#' => Some("a comment"),
                b'*' => Some("a `*table` line"),
                b':' => Some("a chain declaration"),
                _ if body.split([' ', '\t']).next() == Some("COMMIT") => Some("`COMMIT`"),
                _ => None,
            };
            if let Some(what) = what {
                let e =
                    LineError::new(indent, format!("expected {what} to start in the first column, found it indented"));
                self.line_error(line_no, line, e);
                return;
            }
        }
        match first {
            b'#' => {
                if body.starts_with("# Generated by ip6tables") {
                    let e = LineError::ipv6(indent, "this file was written by `ip6tables-save`");
                    self.line_error(line_no, line, e);
                }
            }
            b'*' => self.table_line(line_no, line, indent),
            _ => {
                // `[packets:bytes]` in the first column is a counter prefix
                // (`iptables-save -c`); the rule starts after it.
                let mut text = line;
                let mut from = 0;
                let mut newline = newline;
                let mut prefix = None;
                if indent == 0 && first == b'[' {
                    match counter_prefix(line, newline) {
                        Ok(p) => {
                            text = line.get(..p.end).unwrap_or(line);
                            from = p.start;
                            newline = p.newline;
                            prefix = Some(p.counters);
                        }
                        Err(e) => {
                            self.line_error(line_no, line, e);
                            return;
                        }
                    }
                }
                let open = match lex::split(text, from, newline, words) {
                    Ok(lex::Split::Closed) => None,
                    Ok(lex::Split::OpenQuote(at)) => Some(at),
                    Err(lex::LexError::Nul(at)) => {
                        let e = LineError::new(
                            at,
                            "expected text, found a NUL byte (iptables-restore would drop the rest of the line; is this a binary file?)",
                        );
                        self.line_error(line_no, line, e);
                        return;
                    }
                };
                if let Err(e) = self.command(line_no, line, words, prefix, open) {
                    self.line_error(line_no, line, e);
                }
            }
        }
    }

    fn table_line(&mut self, line_no: u32, line: &str, indent: usize) {
        // iptables-restore takes the first word after `*` and ignores the
        // rest of the line.
        let name = line.get(indent + 1..).unwrap_or("").split([' ', '\t']).find(|w| !w.is_empty()).unwrap_or("");
        self.end_segment(false);
        let loc = self.loc(line_no, lex::column(line, indent));
        let mut seg = Segment::new(loc.clone());
        match TableName::from_name(name) {
            Some(t) => {
                let prev = self.tables.iter().position(|ts| ts.t.name == t);
                let prev_state = prev.and_then(|i| self.tables.get_mut(i));
                if let Some(ts) = prev_state.filter(|ts| ts.t.form == TableForm::Complete && !ts.inferred) {
                    // A table given again after its `COMMIT` replaces what
                    // the first block said, as iptables-restore does.
                    ts.t.chains.clear();
                    ts.t.loc = loc;
                    ts.t.form = TableForm::Unterminated;
                    ts.index.clear();
                    ts.last_add = None;
                    ts.staged.clear();
                    ts.staged_for = None;
                    ts.target_cols.clear();
                    seg.header = prev;
                } else if let Some(prev) = prev.and_then(|i| self.tables.get(i)) {
                    let first = prev.t.loc.line;
                    self.error(loc, format!("table `{}` is given twice (first at line {first})", t.as_str()));
                    seg.skip = true;
                } else {
                    seg.header = Some(self.table_index(t, &loc, true, None));
                }
            }
            None => {
                let e = LineError::new(
                    indent + 1,
                    format!(
                        "expected a table name (`raw`, `mangle`, `nat`, `filter` or `security`) after `*`, found `{}`",
                        show(name)
                    ),
                );
                self.line_error(line_no, line, e);
                // Skip the block: its lines cannot be placed.
                seg.skip = true;
            }
        }
        self.seg = Some(seg);
    }

    fn push_op(&mut self, line_no: u32, op: Op<'a>) {
        // `iptables -S` output starts with the `-P` lines of its table: a
        // `-P` after rules starts the next listing of a concatenation
        // (`iptables -t nat -S; iptables -S`).
        let next_listing = matches!(op.kind, OpKind::SetPolicy { .. })
            && self.seg.as_ref().is_some_and(|s| {
                s.header.is_none() && !s.skip && s.ops.iter().any(|o| matches!(o.kind, OpKind::Add { .. }))
            });
        if next_listing {
            self.end_segment(false);
        }
        if self.seg.is_none() {
            self.seg = Some(Segment::new(self.loc(line_no, 1)));
        }
        let Some(seg) = self.seg.as_mut() else { return };
        if seg.skip {
            return;
        }
        match seg.header {
            None => {
                // A paste keeps its lines until its tables are inferred:
                // each line's rules move to a vector of their size, and the
                // parse buffer stays for the next line.
                let mut op = op;
                if let OpKind::Add { rules, .. } = &mut op.kind {
                    let mut kept = Vec::with_capacity(rules.len());
                    kept.append(rules);
                    let buf = std::mem::replace(rules, kept);
                    if self.rules.capacity() == 0 {
                        self.rules = buf;
                    }
                }
                seg.ops.push(op);
            }
            Some(ti) => {
                let mut pending = std::mem::take(&mut seg.pending);
                self.apply(ti, op, Some(&mut pending));
                if let Some(seg) = self.seg.as_mut() {
                    seg.pending = pending;
                }
            }
        }
    }

    /// One line that is not a `*table` line or a comment. `prefix`: the
    /// line starts with a counter prefix (and its counters when they are
    /// numbers); `open`: where a quote left open at the end of the line
    /// starts.
    fn command(
        &mut self,
        line_no: u32,
        line: &'a str,
        words: &[Word<'a>],
        prefix: Option<Option<Counters>>,
        open: Option<usize>,
    ) -> Result<(), LineError> {
        let Some(first) = words.first() else {
            if prefix.is_some() {
                return Err(LineError::new(
                    line.len(),
                    "expected a command such as `-A` after the counters, found end of line",
                ));
            }
            return Ok(());
        };
        let f = first.as_str();
        // After a counter prefix the line is read as a command: `COMMIT`
        // and `:CHAIN` are refused there, as iptables-restore refuses them.
        if f == "COMMIT" && !first.quoted && prefix.is_none() {
            if line.len() > "COMMIT".len() && words.len() == 1 {
                // iptables-restore compares the whole line with `COMMIT`.
                return Err(LineError::new("COMMIT".len(), "expected end of line after `COMMIT`, found white space"));
            }
            if let Some(w) = words.get(1) {
                return Err(LineError::new(
                    w.start,
                    format!("expected end of line after `COMMIT`, found `{}`", show(w.as_str())),
                ));
            }
            if self.seg.is_none() {
                return Err(LineError::new(first.start, "expected a `*table` line before `COMMIT`, found none"));
            }
            self.end_segment(true);
            return Ok(());
        }
        if f.starts_with(':') && !first.quoted && prefix.is_none() {
            let name: Cow<'a, str> = match &first.text {
                Cow::Borrowed(b) => Cow::Borrowed(b.get(1..).unwrap_or("")),
                Cow::Owned(o) => Cow::Owned(o.get(1..).unwrap_or("").to_string()),
            };
            return self.declaration(line_no, line, name, words);
        }
        let rest = words;
        let counters = prefix.flatten();
        // The rule's location: the counter prefix when there is one.
        let start = if prefix.is_some() { 0 } else { first.start };
        let cmd = first;
        let c = cmd.as_str();
        let chain_word = |what: &str| -> Result<&Word<'_>, LineError> {
            match rest.get(1) {
                None => {
                    Err(LineError::new(line.len(), format!("expected a chain name after `{c}`, found end of line")))
                }
                Some(w) if w.as_str().is_empty() || (w.as_str().starts_with('-') && !w.quoted) => {
                    Err(LineError::new(w.start, format!("expected {what} after `{c}`, found `{}`", show(w.as_str()))))
                }
                Some(w) => {
                    rule::check_chain_name(w)?;
                    Ok(w)
                }
            }
        };
        match c {
            "-A" | "--append" | "-I" | "--insert" => {
                let insert = c == "-I" || c == "--insert";
                let chain = chain_word("a chain name")?;
                let mut args = rest.get(2..).unwrap_or(&[]);
                let mut pos = None;
                if insert {
                    pos = Some(1);
                    if let Some(n) = args.first().and_then(|w| value::dec(w.as_str())) {
                        if n == 0 {
                            return Err(LineError::new(args.first().map_or(0, |w| w.start), "rule numbers start at 1"));
                        }
                        pos = usize::try_from(n).ok();
                        args = args.get(1..).unwrap_or(&[]);
                    }
                }
                let rule_loc = self.loc(line_no, lex::column(line, start));
                let mut rules = std::mem::take(&mut self.rules);
                let parsed = rule::parse(args, line.len(), &rule_loc, self.opts.lenient, &mut self.mods, &mut rules);
                let target_at = match parsed {
                    Ok(at) => at,
                    Err(e) => {
                        self.rules = rules;
                        return Err(e);
                    }
                };
                if let Some(at) = open {
                    if let Err(e) = self.check_open_word(&chain.text, &rules, &rule_loc, at) {
                        self.rules = rules;
                        return Err(e);
                    }
                }
                if let Some(opt) = rules.first().and_then(|r| hooks::wrong_iface(&chain.text, r)) {
                    self.rules = rules;
                    let dir = if opt == "-i" { "input" } else { "output" };
                    return Err(LineError::new(
                        chain.start,
                        format!(
                            "`{opt}` cannot be used in chain `{}`: its packets have no {dir} interface (iptables refuses it)",
                            chain.text
                        ),
                    ));
                }
                if counters.is_some() {
                    for r in &mut rules {
                        if r.counters.is_none() {
                            r.counters = counters.map(Box::new);
                        }
                    }
                }
                let target_at = target_at.map(|at| (line_no, lex::column(line, at)));
                let op = Op {
                    chain: chain.text.clone(),
                    loc: self.loc(line_no, lex::column(line, chain.start)),
                    kind: OpKind::Add { rules, target_at, insert: pos },
                };
                self.push_op(line_no, op);
            }
            "-N" | "--new-chain" | "--new" | "-X" | "--delete-chain" | "-F" | "--flush" => {
                let chain = chain_word("a chain name")?;
                if let Some(w) = rest.get(2) {
                    return Err(LineError::new(
                        w.start,
                        format!(
                            "expected end of line after `{c} {}`, found `{}`",
                            show(chain.as_str()),
                            show(w.as_str())
                        ),
                    ));
                }
                let kind = match c {
                    "-N" | "--new-chain" | "--new" => {
                        OpKind::Decl { policy: None, counters: None, colon: false, other: None }
                    }
                    "-X" | "--delete-chain" => OpKind::Delete,
                    _ => OpKind::Flush,
                };
                let op = Op { chain: chain.text.clone(), loc: self.loc(line_no, lex::column(line, chain.start)), kind };
                self.push_op(line_no, op);
            }
            "-P" | "--policy" => {
                let chain = chain_word("a chain name")?;
                let p = match rest.get(2) {
                    None => {
                        return Err(LineError::new(
                            line.len(),
                            "expected a policy (`ACCEPT` or `DROP`) after the chain, found end of line",
                        ))
                    }
                    Some(w) => match w.as_str() {
                        "ACCEPT" => Policy::Accept,
                        "DROP" => Policy::Drop,
                        _ => {
                            return Err(LineError::new(
                                w.start,
                                format!(
                                    "expected a policy (`ACCEPT` or `DROP`) after `-P {}`, found `{}`",
                                    show(chain.as_str()),
                                    show(w.as_str())
                                ),
                            ))
                        }
                    },
                };
                // `iptables -S -v` adds `-c PACKETS BYTES`.
                let mut pc = counters;
                match rest.get(3) {
                    None => {}
                    Some(w) if w.as_str() == "-c" => {
                        let num = |i: usize, what: &str| -> Result<u64, LineError> {
                            match rest.get(i) {
                                None => Err(LineError::new(
                                    line.len(),
                                    format!("expected {what} after `-c`, found end of line"),
                                )),
                                Some(v) => value::dec(v.as_str()).ok_or_else(|| args::bad(v, "-c", what)),
                            }
                        };
                        pc = Some(Counters { packets: num(4, "a packet count")?, bytes: num(5, "a byte count")? });
                        if let Some(w) = rest.get(6) {
                            return Err(LineError::new(
                                w.start,
                                format!("expected end of line, found `{}`", show(w.as_str())),
                            ));
                        }
                    }
                    Some(w) => {
                        return Err(LineError::new(
                            w.start,
                            format!("expected end of line, found `{}`", show(w.as_str())),
                        ))
                    }
                }
                let op = Op {
                    chain: chain.text.clone(),
                    loc: self.loc(line_no, lex::column(line, chain.start)),
                    kind: OpKind::SetPolicy { policy: p, counters: pc.filter(|c| *c != Counters::default()) },
                };
                self.push_op(line_no, op);
            }
            "-D" | "--delete" | "-R" | "--replace" | "-Z" | "--zero" | "-E" | "--rename-chain" => {
                return Err(LineError::new(
                    cmd.start,
                    format!("`{c}` changes a live ruleset; a dump has only `-A`, `-I`, `-N`, `-P`, `-X` and `-F`"),
                ));
            }
            _ => {
                return Err(LineError::new(
                    cmd.start,
                    format!(
                        "expected a table (`*nat`), a chain (`:NAME POLICY [0:0]`), a rule (`-A CHAIN ...`) or `COMMIT`, found `{}`",
                        show(c)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A rule whose last word is a quote left open at the end of the line
    /// (the word ends with the line's newline) is read only when printing
    /// it puts that word last again: `print` writes it as an open quote at
    /// the end of the line, the one form iptables-restore reads a newline
    /// in a word from (iptables-save's own form, the newline inside quotes
    /// and `"` alone on the next line, is refused by iptables-restore). A
    /// word moved before other options by the canonical order (a target
    /// written before the module, an option of an earlier module written
    /// after it) could not be printed back, and is refused.
    fn check_open_word(&mut self, chain: &str, rules: &[Rule], loc: &Loc, at: usize) -> Result<(), LineError> {
        let mut again = Vec::new();
        for r in rules {
            let text = crate::print::rule_text(chain, r);
            let mut words = Vec::new();
            let same = match lex::split(&text, 0, true, &mut words) {
                Ok(_) => {
                    let args = words.get(2..).unwrap_or(&[]);
                    rule::parse(args, text.len(), loc, self.opts.lenient, &mut self.mods, &mut again).is_ok()
                        && again.len() == 1
                        && again.first().is_some_and(|a| {
                            let mut a = a.clone();
                            a.counters = r.counters.clone();
                            a == *r
                        })
                }
                Err(_) => false,
            };
            if !same {
                return Err(LineError::new(
                    at,
                    "expected a closing `\"`, found end of line: a quote left open takes the rest of the line and its newline into its word, which natpath reads only as the last word of the rule once printed (after the target and every other option)",
                ));
            }
        }
        Ok(())
    }

    fn declaration(
        &mut self,
        line_no: u32,
        line: &'a str,
        name: Cow<'a, str>,
        words: &[Word<'a>],
    ) -> Result<(), LineError> {
        let first = words.first().map_or(0, |w| w.start);
        let name_word = Word { text: name.clone(), start: first + 1, quoted: false };
        if name.is_empty() {
            return Err(LineError::new(first + 1, "expected a chain name after `:`, found nothing"));
        }
        rule::check_chain_name(&name_word)?;
        // iptables-restore (without `--counters`) reads the chain name and
        // one more word, and ignores the rest of the line: a user chain's
        // policy word can be anything, and the counters are not read.
        let mut other = None;
        let policy = match words.get(1) {
            None => {
                return Err(LineError::new(
                    line.len(),
                    format!("expected a policy (`ACCEPT`, `DROP` or `-`) after `:{}`, found end of line", show(&name)),
                ))
            }
            Some(w) => match w.as_str() {
                "ACCEPT" => Some(Policy::Accept),
                "DROP" => Some(Policy::Drop),
                "-" => None,
                s => {
                    other = Some((lex::column(line, w.start), s.to_string()));
                    None
                }
            },
        };
        let counters = words.get(2).and_then(|w| counters_word(w).ok());
        let op = Op {
            chain: name,
            loc: self.loc(line_no, lex::column(line, first + 1)),
            kind: OpKind::Decl { policy, counters: counters.filter(|c| *c != Counters::default()), colon: true, other },
        };
        self.push_op(line_no, op);
        Ok(())
    }

    /// End the current segment: a `*table` block is complete when it ends
    /// with `COMMIT`; a paste's lines are placed in their inferred tables.
    fn end_segment(&mut self, committed: bool) {
        let Some(seg) = self.seg.take() else { return };
        if let Some(ti) = seg.header {
            if let Some(ts) = self.tables.get_mut(ti) {
                ts.t.form = if committed { TableForm::Complete } else { TableForm::Unterminated };
            }
            if committed {
                for (loc, msg) in seg.pending {
                    self.error(loc, msg);
                }
            }
            return;
        }
        if seg.skip || seg.ops.is_empty() {
            return;
        }
        let tables: Vec<(TableName, Option<infer::Reason>)> = match self.opts.table {
            Some(t) => vec![(t, None); seg.ops.len()],
            None => {
                let items: Vec<infer::Item<'_>> = seg
                    .ops
                    .iter()
                    .map(|op| infer::Item {
                        chain: &op.chain,
                        with_policy: matches!(op.kind, OpKind::SetPolicy { .. } | OpKind::Decl { policy: Some(_), .. }),
                        rules: match &op.kind {
                            OpKind::Add { rules, .. } => rules,
                            _ => &[],
                        },
                    })
                    .collect();
                infer::infer(&items).into_iter().map(|(t, r)| (t, Some(r))).collect()
            }
        };
        for (op, (t, reason)) in seg.ops.into_iter().zip(tables) {
            let ti = self.table_index(t, &seg.start, false, reason);
            if self.tables.get(ti).is_some_and(|ts| ts.t.form == TableForm::Complete) {
                // iptables-restore refuses a line after `COMMIT` that is
                // not a `*table` line: it would change a whole table.
                let msg = format!(
                    "expected a `*{}` line before this line: table `{}` ended with `COMMIT`",
                    t.as_str(),
                    t.as_str()
                );
                self.error(op.loc.at_column(1), msg);
                continue;
            }
            self.apply(ti, op, None);
        }
    }

    /// The index of table `t`, created when first seen (a `*table` block is
    /// unterminated until its `COMMIT`).
    fn table_index(&mut self, t: TableName, loc: &Loc, header: bool, reason: Option<infer::Reason>) -> usize {
        if let Some(i) = self.tables.iter().position(|ts| ts.t.name == t) {
            return i;
        }
        let form = if header { TableForm::Unterminated } else { TableForm::Headerless };
        self.tables.push(TableState {
            t: Table { name: t, chains: Vec::new(), loc: loc.clone(), form },
            index: NameMap::default(),
            last_add: None,
            staged: Vec::new(),
            staged_for: None,
            target_cols: Vec::new(),
            inferred: reason.is_some(),
        });
        self.tables.len() - 1
    }

    /// Apply one line to table `ti`. In a `*table` block (`pending` given)
    /// the errors that hold only for a complete block wait there for
    /// `COMMIT`; the block is read as partial meanwhile.
    fn apply(&mut self, ti: usize, op: Op<'a>, mut pending: Option<&mut Vec<(Loc, String)>>) {
        let Some(ts) = self.tables.get_mut(ti) else { return };
        if !matches!(op.kind, OpKind::Add { insert: None, .. }) {
            ts.flush();
        }
        let tname = ts.t.name;
        // The emptied buffer of an `-A` line, for the next line.
        let mut spare: Option<Vec<Rule>> = None;
        let mut errs: Vec<(Loc, String)> = Vec::new();
        let mut strict = |loc: Loc, msg: String| {
            if let Some(p) = pending.as_mut() {
                p.push((loc, msg));
            }
        };
        match op.kind {
            OpKind::Decl { policy, counters, colon, other } => {
                let builtin = ts.is_builtin(&op.chain);
                if !colon && builtin {
                    errs.push((
                        op.loc.clone(),
                        format!("`-N` cannot create `{}`, a built-in chain of table `{}`", op.chain, tname.as_str()),
                    ));
                } else if let (true, Some((col, word))) = (builtin, &other) {
                    errs.push((
                        op.loc.at_column(*col),
                        format!(
                            "expected a policy (`ACCEPT`, `DROP` or `-`) for `{}`, a built-in chain of table `{}`, found `{}`",
                            op.chain,
                            tname.as_str(),
                            show(word)
                        ),
                    ));
                } else {
                    // A user chain's policy word is ignored, as
                    // iptables-restore ignores it.
                    let policy = if builtin { policy } else { None };
                    match ts.index.entry(op.chain.clone()) {
                        Entry::Occupied(e) => {
                            if let Some(c) = ts.t.chains.get_mut(*e.get()) {
                                if c.implied {
                                    c.implied = false;
                                    c.policy = if builtin { Some(policy.unwrap_or(Policy::Accept)) } else { None };
                                    c.counters = counters;
                                    c.loc = op.loc.clone();
                                } else if !colon {
                                    strict(
                                        op.loc.clone(),
                                        format!(
                                            "`-N {}`: the chain exists already (declared at line {})",
                                            op.chain, c.loc.line
                                        ),
                                    );
                                } else {
                                    // `:NAME` again, as iptables-restore
                                    // reads it: a built-in chain takes the
                                    // new policy (`-` keeps it) and keeps
                                    // its rules; a user chain is emptied.
                                    // The chain stays where it was first
                                    // declared.
                                    if builtin {
                                        if policy.is_some() {
                                            c.policy = policy;
                                        }
                                    } else {
                                        c.rules.clear();
                                    }
                                    c.counters = counters;
                                }
                            }
                        }
                        Entry::Vacant(e) => {
                            e.insert(ts.t.chains.len());
                            ts.t.chains.push(Chain {
                                name: op.chain.into_owned(),
                                policy: if builtin { Some(policy.unwrap_or(Policy::Accept)) } else { None },
                                counters,
                                rules: Vec::new(),
                                implied: false,
                                loc: op.loc,
                            });
                        }
                    }
                }
            }
            OpKind::SetPolicy { policy, counters } => {
                if tname == TableName::Nat && policy == Policy::Drop {
                    errs.push((op.loc.clone(), NAT_DROP.to_string()));
                } else if !ts.is_builtin(&op.chain) {
                    errs.push((
                        op.loc.clone(),
                        format!(
                            "expected a built-in chain of table `{}` after `-P`, found `{}`",
                            tname.as_str(),
                            op.chain
                        ),
                    ));
                } else {
                    match ts.index.get(&*op.chain).copied() {
                        Some(i) => {
                            if let Some(c) = ts.t.chains.get_mut(i) {
                                c.policy = Some(policy);
                                c.implied = false;
                                if counters.is_some() {
                                    c.counters = counters;
                                }
                            }
                        }
                        None => {
                            ts.index.insert(op.chain.clone(), ts.t.chains.len());
                            ts.t.chains.push(Chain {
                                name: op.chain.into_owned(),
                                policy: Some(policy),
                                counters,
                                rules: Vec::new(),
                                implied: false,
                                loc: op.loc,
                            });
                        }
                    }
                }
            }
            OpKind::Add { mut rules, target_at, insert } => {
                let i = match ts.chain_index(&op.chain) {
                    Some(i) => i,
                    None => {
                        let builtin = ts.is_builtin(&op.chain);
                        if !builtin {
                            strict(
                                op.loc.clone(),
                                format!(
                                    "chain `{}` is not declared in table `{}` (no `:{}` line before this rule)",
                                    op.chain,
                                    tname.as_str(),
                                    op.chain
                                ),
                            );
                        }
                        ts.index.insert(op.chain.clone(), ts.t.chains.len());
                        ts.last_add = Some(ts.t.chains.len());
                        ts.t.chains.push(Chain {
                            name: op.chain.to_string(),
                            policy: builtin.then_some(Policy::Accept),
                            counters: None,
                            rules: Vec::new(),
                            implied: true,
                            loc: op.loc.clone(),
                        });
                        ts.t.chains.len() - 1
                    }
                };
                {
                    let mut ok = true;
                    if let Some((at, t)) = rules.first().and_then(|r| Some((&r.loc, r.target.as_ref()?))) {
                        if tname == TableName::Nat && matches!(t, Target::Drop) {
                            errs.push((at.clone(), NAT_DROP.to_string()));
                            ok = false;
                        } else if let Some(only) = targets::only_table(t) {
                            if only != tname {
                                errs.push((
                                    at.clone(),
                                    format!(
                                        "target `{}` is only valid in table `{}`, not in `{}`",
                                        target_name(t),
                                        only.as_str(),
                                        tname.as_str()
                                    ),
                                ));
                                ok = false;
                            }
                        }
                    }
                    if ok {
                        if let Some(at) = target_at {
                            if ts.target_cols.last().is_none_or(|(l, _)| *l != at.0) {
                                ts.target_cols.push(at);
                            }
                        }
                        if insert.is_none() {
                            if ts.staged_for != Some(i) {
                                ts.flush();
                                ts.staged_for = Some(i);
                            }
                            ts.staged.append(&mut rules);
                        } else if let Some(c) = ts.t.chains.get_mut(i) {
                            match insert {
                                None => {}
                                Some(pos) if pos <= c.rules.len() + 1 => {
                                    let at = pos - 1;
                                    let tail = c.rules.split_off(at);
                                    c.rules.append(&mut rules);
                                    c.rules.extend(tail);
                                }
                                Some(pos) => errs.push((
                                    op.loc.clone(),
                                    format!("`-I {} {pos}`: the chain has only {} rules", op.chain, c.rules.len()),
                                )),
                            }
                        }
                    }
                }
                spare = Some(rules);
            }
            OpKind::Delete | OpKind::Flush => {
                let delete = matches!(op.kind, OpKind::Delete);
                match ts.index.get(&*op.chain).copied() {
                    None => errs.push((
                        op.loc.clone(),
                        format!("chain `{}` does not exist in table `{}`", op.chain, tname.as_str()),
                    )),
                    Some(_) if delete && ts.is_builtin(&op.chain) => {
                        errs.push((op.loc.clone(), format!("`-X` cannot delete `{}`, a built-in chain", op.chain)))
                    }
                    Some(i) if delete && ts.t.chains.get(i).is_some_and(|c| !c.rules.is_empty()) => {
                        let n = ts.t.chains.get(i).map_or(0, |c| c.rules.len());
                        errs.push((
                            op.loc.clone(),
                            format!("`-X` cannot delete `{}`: it has {n} rules (`-F` empties it)", op.chain),
                        ))
                    }
                    Some(_)
                        if delete
                            && ts.t.chains.iter().any(|c| {
                                c.rules.iter().any(|r| r.target.as_ref().and_then(Target::chain) == Some(&*op.chain))
                            }) =>
                    {
                        let line =
                            ts.t.chains
                                .iter()
                                .flat_map(|c| &c.rules)
                                .find(|r| r.target.as_ref().and_then(Target::chain) == Some(&*op.chain))
                                .map_or(0, |r| r.loc.line);
                        errs.push((
                            op.loc.clone(),
                            format!("`-X` cannot delete `{}`: the rule at line {line} jumps to it", op.chain),
                        ))
                    }
                    Some(i) => {
                        if delete {
                            ts.t.chains.remove(i);
                            ts.reindex();
                        } else if let Some(c) = ts.t.chains.get_mut(i) {
                            c.rules.clear();
                        }
                    }
                }
            }
        }
        if let Some(mut v) = spare {
            if self.rules.capacity() == 0 {
                v.clear();
                self.rules = v;
            }
        }
        for (loc, msg) in errs {
            self.error(loc, msg);
        }
    }

    /// Check the chain graph of every table, imply what partial dumps use,
    /// and write the notes.
    fn finish(mut self) -> Result<Ruleset, ParseErrors> {
        let mut notes = Vec::new();
        let mut tables = Vec::new();
        let mut errs: Vec<(Loc, String)> = Vec::new();
        for mut ts in std::mem::take(&mut self.tables) {
            ts.flush();
            let tname = ts.t.name;
            let complete = ts.t.form == TableForm::Complete;
            // Chains used as targets but not there; the edges of the chain
            // graph on the way (one lookup per jump, none when the target
            // is the previous jump's, as kube-proxy's `KUBE-MARK-MASQ`
            // often is).
            let mut implied_new: Vec<Chain> = Vec::new();
            let mut edges = Edges::new(ts.t.chains.len());
            let mut last: Option<(&str, Option<usize>)> = None;
            for (i, c) in ts.t.chains.iter().enumerate() {
                for r in &c.rules {
                    let Some(to) = r.target.as_ref().and_then(Target::chain) else { continue };
                    let found = match last {
                        Some((name, found)) if name == to => found,
                        _ => ts.index.get(to).copied(),
                    };
                    last = Some((to, found));
                    if let Some(j) = found {
                        edges.add(i, j);
                    }
                    if ts.is_builtin(to) {
                        errs.push((
                            ts.target_loc(r),
                            format!("cannot jump to `{to}`, a built-in chain of table `{}`", tname.as_str()),
                        ));
                    } else if let Some(j) = found {
                        // iptables-restore resolves a jump when it reads
                        // the rule: the chain must be declared before.
                        let decl = ts.t.chains.get(j).filter(|t| complete && !t.implied);
                        if let Some(t) = decl.filter(|t| t.loc.line > r.loc.line) {
                            errs.push((
                                ts.target_loc(r),
                                format!(
                                    "chain `{to}` is declared at line {}, after this rule: a chain must be declared before a rule jumps to it",
                                    t.loc.line
                                ),
                            ));
                        }
                        continue;
                    } else if complete {
                        errs.push((
                            ts.target_loc(r),
                            format!(
                                "chain `{to}` is not declared in table `{}` (jump from `{}`)",
                                tname.as_str(),
                                c.name
                            ),
                        ));
                    } else if !implied_new.iter().any(|x| x.name == to) {
                        implied_new.push(Chain {
                            name: to.to_string(),
                            policy: None,
                            counters: None,
                            rules: Vec::new(),
                            implied: true,
                            loc: ts.target_loc(r),
                        });
                    }
                }
            }
            // Implied chains go after the declared ones, built-ins first,
            // then by name: an order that does not depend on line order.
            // A complete dump has none, and its chains keep their indices.
            if !implied_new.is_empty() || ts.t.chains.iter().any(|c| c.implied) {
                ts.t.chains.extend(implied_new);
                let builtins = tname.builtin_chains();
                let (declared, mut implied): (Vec<Chain>, Vec<Chain>) =
                    std::mem::take(&mut ts.t.chains).into_iter().partition(|c| !c.implied);
                implied.sort_by(|a, b| {
                    let ka = (builtins.iter().position(|x| *x == a.name).unwrap_or(usize::MAX), &a.name);
                    let kb = (builtins.iter().position(|x| *x == b.name).unwrap_or(usize::MAX), &b.name);
                    ka.cmp(&kb)
                });
                ts.t.chains = declared;
                ts.t.chains.extend(implied);
                ts.reindex();
                edges = Edges::of(&ts);
            }
            let looped = loops(&ts, &edges);
            if looped.is_empty() {
                errs.extend(too_deep(&ts, &edges));
                // Where a match or target may be used depends on the table:
                // a paste whose table is a guess is not held to it.
                if !ts.inferred {
                    errs.extend(misplaced(&ts, &edges));
                }
            }
            errs.extend(looped);
            // Notes, in the order of the tables and chains.
            if ts.inferred {
                let msg = match infer::reason_of(&ts.t) {
                    infer::Reason::Listing => {
                        format!("no `*table` line: read as table `{}`, whose built-in chains it lists", tname.as_str())
                    }
                    infer::Reason::Evidence => format!(
                        "no `*table` line: these rules read as table `{}`, inferred from their targets and chain names",
                        tname.as_str()
                    ),
                    infer::Reason::Default => format!(
                        "no `*table` line and nothing to infer it from: read as table `{}`, iptables' default",
                        tname.as_str()
                    ),
                };
                notes.push(Note { loc: ts.t.loc.clone(), message: msg });
            }
            for c in &ts.t.chains {
                if !c.implied {
                    continue;
                }
                let message = if ts.is_builtin(&c.name) {
                    format!(
                        "built-in chain `{}` of table `{}` has no `:{}` line: policy `ACCEPT` assumed",
                        c.name,
                        tname.as_str(),
                        c.name
                    )
                } else {
                    format!(
                        "chain `{}` of table `{}` is not declared: implied by its use in a partial dump",
                        c.name,
                        tname.as_str()
                    )
                };
                notes.push(Note { loc: c.loc.clone(), message });
            }
            tables.push(ts.t);
        }
        for (loc, msg) in errs {
            self.error(loc, msg);
        }
        if self.errors.is_empty() {
            Ok(Ruleset { tables, notes })
        } else {
            Err(ParseErrors(self.errors))
        }
    }
}

/// The chain graph of a table: the chains each chain jumps or goes to,
/// each once, in the order of first use, in one flat list (a table has
/// tens of thousands of chains; a vector each would be as many
/// allocations).
struct Edges {
    /// Where the edges of chain `i` start in `to`.
    // INVARIANT: edges are added chain by chain (`i` never decreases), so
    // the edges of chain `i` run from `start[i]` to `start[i + 1]` (or the
    // end of `to`); chains past the end of `start` have none.
    start: Vec<usize>,
    to: Vec<usize>,
    /// The last chain (plus one) given an edge to each chain: a dispatch
    /// chain such as `KUBE-SERVICES` jumps to thousands of chains, and
    /// looking for each edge in the list so far would be quadratic.
    last_from: Vec<usize>,
}

impl Edges {
    fn new(n: usize) -> Self {
        Edges { start: Vec::new(), to: Vec::new(), last_from: vec![0; n] }
    }

    /// The edges of `ts`, its chain names looked up in its index.
    fn of(ts: &TableState<'_>) -> Self {
        let mut e = Edges::new(ts.t.chains.len());
        for (i, c) in ts.t.chains.iter().enumerate() {
            for r in &c.rules {
                if let Some(&j) = r.target.as_ref().and_then(Target::chain).and_then(|t| ts.index.get(t)) {
                    e.add(i, j);
                }
            }
        }
        e
    }

    /// An edge from chain `i` to chain `j` (`i` never decreases).
    fn add(&mut self, i: usize, j: usize) {
        while self.start.len() <= i {
            self.start.push(self.to.len());
        }
        if let Some(seen) = self.last_from.get_mut(j) {
            if *seen != i + 1 {
                *seen = i + 1;
                self.to.push(j);
            }
        }
    }

    /// The chains chain `i` jumps or goes to.
    fn from(&self, i: usize) -> &[usize] {
        let end = self.to.len();
        let a = self.start.get(i).copied().unwrap_or(end);
        let b = self.start.get(i + 1).copied().unwrap_or(end);
        self.to.get(a..b).unwrap_or(&[])
    }
}

/// Jump loops of a table (`edges`: its graph): each back edge of a
/// depth-first walk of the chain graph, reported at the jump that closes
/// the loop.
fn loops(ts: &TableState<'_>, edges: &Edges) -> Vec<(Loc, String)> {
    let n = ts.t.chains.len();
    let name = |i: usize| ts.t.chains.get(i).map_or("?", |c| c.name.as_str());
    let mut out = Vec::new();
    // 0 = unseen, 1 = on the stack, 2 = done.
    let mut color = vec![0u8; n];
    for root in 0..n {
        // Only a loop that a built-in chain reaches is refused (the kernel
        // validates the graph from its base chains).
        if color.get(root).copied() != Some(0) || !ts.is_builtin(name(root)) {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        if let Some(c) = color.get_mut(root) {
            *c = 1;
        }
        while let Some(&mut (v, ref mut k)) = stack.last_mut() {
            let next = edges.from(v).get(*k).copied();
            *k += 1;
            match next {
                None => {
                    if let Some(c) = color.get_mut(v) {
                        *c = 2;
                    }
                    stack.pop();
                }
                Some(w) => match color.get(w).copied() {
                    Some(0) => {
                        if let Some(c) = color.get_mut(w) {
                            *c = 1;
                        }
                        stack.push((w, 0));
                    }
                    Some(1) => {
                        let from = stack.iter().position(|(x, _)| *x == w).unwrap_or(0);
                        let mut path: Vec<String> =
                            stack.iter().skip(from).map(|(x, _)| format!("`{}`", name(*x))).collect();
                        path.push(format!("`{}`", name(w)));
                        let at =
                            ts.t.chains
                                .get(v)
                                .and_then(|c| {
                                    c.rules.iter().find(|r| r.target.as_ref().and_then(Target::chain) == Some(name(w)))
                                })
                                .map(|r| ts.target_loc(r))
                                .unwrap_or_else(Loc::synthetic);
                        out.push((at, format!("jump loop in table `{}`: {}", ts.t.name.as_str(), path.join(" -> "))));
                    }
                    _ => {}
                },
            }
        }
    }
    out
}

/// Matches and targets used where the kernel refuses them when it loads
/// the table (`edges`: the table's graph, without loops): in a table they
/// are not bound to, or in a chain reached (through jumps and gotos) from
/// a hook they are not allowed in. One error per rule, at the rule.
fn misplaced(ts: &TableState<'_>, edges: &Edges) -> Vec<(Loc, String)> {
    let chains = &ts.t.chains;
    let name = |i: usize| chains.get(i).map_or("?", |c| c.name.as_str());
    // reached[v]: the hooks whose built-in chain reaches chain v.
    let mut reached = vec![hooks::Hooks::NONE; chains.len()];
    let mut work = Vec::new();
    for (i, c) in chains.iter().enumerate() {
        if ts.is_builtin(&c.name) {
            if let Some(slot) = reached.get_mut(i) {
                *slot = hooks::Hooks::of_builtin(&c.name);
                work.push(i);
            }
        }
    }
    // A chain's set only grows (five hooks), so the walk ends.
    while let Some(v) = work.pop() {
        let here = reached.get(v).copied().unwrap_or(hooks::Hooks::NONE);
        for &w in edges.from(v) {
            if let Some(slot) = reached.get_mut(w) {
                let grown = slot.union(here);
                if grown != *slot {
                    *slot = grown;
                    work.push(w);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (i, c) in chains.iter().enumerate() {
        let here = reached.get(i).copied().unwrap_or(hooks::Hooks::NONE);
        for r in &c.rules {
            if let Some((what, tables)) = hooks::wrong_table(r, ts.t.name) {
                out.push((
                    r.loc.clone(),
                    format!(
                        "{what} may be used only in table {tables}, not in `{}` (the kernel refuses the rule)",
                        ts.t.name.as_str()
                    ),
                ));
                continue;
            }
            if here.is_empty() {
                continue;
            }
            let bad = hooks::refused(r).find(|(_, refused)| !refused.meet(here).is_empty());
            if let Some((what, refused)) = bad {
                let hooks: Vec<String> = refused.meet(here).names().map(|h| format!("`{h}`")).collect();
                let via =
                    if ts.is_builtin(name(i)) { String::new() } else { format!(", which reaches chain `{}`", name(i)) };
                out.push((
                    r.loc.clone(),
                    format!(
                        "{what} may not be used in hook {}{via} (the kernel refuses the rule when it loads table `{}`)",
                        hooks.join(" or "),
                        ts.t.name.as_str()
                    ),
                ));
            }
        }
    }
    out
}

/// Jumps nested deeper than [`MAX_JUMP_DEPTH`] from a built-in chain of a
/// table without jump loops (`edges`: its graph), which nf_tables refuses
/// when it validates the table (every path from a base chain counts, not
/// only the shortest): one error, at the jump that goes one level too deep
/// on a longest path.
fn too_deep(ts: &TableState<'_>, edges: &Edges) -> Option<(Loc, String)> {
    let n = ts.t.chains.len();
    let name = |i: usize| ts.t.chains.get(i).map_or("?", |c| c.name.as_str());
    // height[v]: the most jumps from chain v on; computed once per chain
    // reached from a built-in chain, children first (no loop is reached,
    // so the walk ends).
    let mut height: Vec<Option<usize>> = vec![None; n];
    let mut worst: Option<(usize, usize)> = None;
    for root in 0..n {
        if !ts.is_builtin(name(root)) {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        while let Some(&mut (v, ref mut k)) = stack.last_mut() {
            let next = edges.from(v).get(*k).copied();
            *k += 1;
            match next {
                Some(w) => {
                    if height.get(w).copied().flatten().is_none() && !stack.iter().any(|(x, _)| *x == w) {
                        stack.push((w, 0));
                    }
                }
                None => {
                    let h = edges.from(v).iter().filter_map(|&w| height.get(w).copied().flatten()).map(|h| h + 1).max();
                    if let Some(slot) = height.get_mut(v) {
                        *slot = Some(h.unwrap_or(0));
                    }
                    stack.pop();
                }
            }
        }
        let h = height.get(root).copied().flatten().unwrap_or(0);
        if h > MAX_JUMP_DEPTH && worst.is_none_or(|(_, wh)| h > wh) {
            worst = Some((root, h));
        }
    }
    let (root, h) = worst?;
    // Follow a longest path down from the root to the jump past the limit.
    let mut path = vec![root];
    let mut v = root;
    let mut left = h;
    while left > 0 {
        let step = edges.from(v).iter().copied().find(|&w| height.get(w).copied().flatten() == Some(left - 1));
        let Some(w) = step else { break };
        path.push(w);
        v = w;
        left -= 1;
    }
    let from = path.get(MAX_JUMP_DEPTH).copied().unwrap_or(root);
    let to = path.get(MAX_JUMP_DEPTH + 1).copied().unwrap_or(root);
    let at =
        ts.t.chains
            .get(from)
            .and_then(|c| c.rules.iter().find(|r| r.target.as_ref().and_then(Target::chain) == Some(name(to))))
            .map(|r| ts.target_loc(r))
            .unwrap_or_else(Loc::synthetic);
    let shown: Vec<String> = path.iter().take(MAX_JUMP_DEPTH + 2).map(|&i| format!("`{}`", name(i))).collect();
    let more = if h > MAX_JUMP_DEPTH + 1 { format!(" -> ... ({h} jumps in all)") } else { String::new() };
    Some((
        at,
        format!(
            "expected jumps nested at most {MAX_JUMP_DEPTH} deep from a built-in chain (the kernel refuses more: Too many links), found {}{more} in table `{}`",
            shown.join(" -> "),
            ts.t.name.as_str()
        ),
    ))
}

/// A counter prefix `[packets:bytes]` at the start of a rule line, read
/// as iptables-restore 1.8.9 reads it: `start..end` is the rest of the
/// line, which is read as the command.
struct CounterPrefix {
    /// The counters, when both are decimal numbers (iptables-restore
    /// without `-c` does not read them; natpath keeps them for display).
    counters: Option<Counters>,
    start: usize,
    end: usize,
    /// The rest of the line still ends with the line's newline.
    newline: bool,
}

/// The counter prefix of `line` (which starts with `[`).
///
/// iptables-restore 1.8.9 finds the first `]` of the line, starts the
/// command right after it, and cuts the packet and byte counts out of the
/// text after the `[` with C's `strtok`: the packet count runs (after any
/// leading `:`) to the next `:`, the byte count (after any leading `]`) to
/// the next `]`. `strtok` ends both with a NUL written into the line, so a
/// `:` or `]` that it finds past the first `]` also ends the command
/// there. Errors are what it refuses: no `]` on the line, no `:` after the
/// packet count, nothing after that `:`. The counts themselves are not
/// checked (`[a:b]` is read without `-c`, which is how a snapshot's dump
/// is loaded).
fn counter_prefix(line: &str, newline: bool) -> Result<CounterPrefix, LineError> {
    let b = line.as_bytes();
    // The line as iptables-restore holds it ends with its newline.
    let len = b.len() + usize::from(newline);
    let at = |i: usize| if i < b.len() { b.get(i).copied() } else { (i < len).then_some(b'\n') };
    let find = |from: usize, c: u8| (from..len).find(|&i| at(i) == Some(c));
    let Some(close) = find(0, b']') else {
        return Err(LineError::new(
            0,
            "expected counters `[packets:bytes]` in front of the rule, found no `]` on the line",
        ));
    };
    let mut p = 1;
    while at(p) == Some(b':') {
        p += 1;
    }
    let colon = if p < len { find(p, b':') } else { None };
    let Some(colon) = colon else {
        return Err(LineError::new(
            0,
            format!(
                "expected counters `[packets:bytes]` in front of the rule, found `{}` (no `:` and byte count)",
                show(line.get(..=close.min(b.len().saturating_sub(1))).unwrap_or(line))
            ),
        ));
    };
    let mut q = colon + 1;
    while at(q) == Some(b']') {
        q += 1;
    }
    if q >= len {
        return Err(LineError::new(
            colon,
            "expected a byte count after `:` in the counters `[packets:bytes]`, found end of line",
        ));
    }
    let bytes_end = find(q, b']');
    let mut end = len;
    for cut in [Some(colon), bytes_end].into_iter().flatten() {
        if cut > close {
            end = end.min(cut);
        }
    }
    let text = |a: usize, z: usize| line.get(a.min(b.len())..z.min(b.len())).unwrap_or("");
    let packets = value::dec(text(p, colon));
    let bytes = value::dec(text(q, bytes_end.unwrap_or(len)));
    Ok(CounterPrefix {
        counters: packets.zip(bytes).map(|(packets, bytes)| Counters { packets, bytes }),
        start: close + 1,
        end: end.min(b.len()),
        newline: newline && end == len,
    })
}

/// `[packets:bytes]`.
fn counters_word(w: &Word<'_>) -> Result<Counters, LineError> {
    let s = w.as_str();
    let inner = s.strip_prefix('[').and_then(|x| x.strip_suffix(']'));
    let parsed = inner
        .and_then(|x| x.split_once(':'))
        .and_then(|(p, b)| Some(Counters { packets: value::dec(p)?, bytes: value::dec(b)? }));
    parsed.ok_or_else(|| LineError::new(w.start, format!("expected counters `[packets:bytes]`, found `{}`", show(s))))
}

/// A target's name as written after `-j`.
fn target_name(t: &Target) -> &str {
    match t {
        Target::Dnat { .. } => "DNAT",
        Target::Snat { .. } => "SNAT",
        Target::Masquerade { .. } => "MASQUERADE",
        Target::Redirect { .. } => "REDIRECT",
        Target::Notrack => "NOTRACK",
        Target::Ct(_) => "CT",
        Target::Checksum => "CHECKSUM",
        _ => "?",
    }
}
