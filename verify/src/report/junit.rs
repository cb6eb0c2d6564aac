//! The report of `natpath gate` as JUnit XML, for CI systems that show test
//! results (Jenkins, GitLab, Azure Pipelines, GitHub test reporters).
//!
//! One `<testsuites>` holding one `<testsuite name="natpath gate">`, and in
//! it one `<testcase>` per invariant of the catalog (classname
//! `natpath.invariant`), per `[[expect]]` contract (`natpath.contract`), per
//! changed Service port of the diff (`natpath.change`) and per entry of the
//! diff natpath could not decide (`natpath.unknown`). What fails the gate is
//! a `<failure>`; what is unknown is an `<error>`; what passes has no child
//! but may carry a `<system-out>` saying why it passes all the same (an
//! invariant that already failed on BEFORE, a change an `[[allow]]`
//! covers). The details (packets, both fates, rules with their file and
//! line) are the element's text. Times are 0: the gate does not time its
//! parts. The output validates against the Jenkins xUnit plugin's
//! `junit-10.xsd` (verify/tests/formats.rs).
//!
//! Contract: `failures` counts exactly the items that fail the gate,
//! `errors` exactly the unknown ones, `skipped` is 0, and `tests` counts
//! every test case; so a gate that is not `pass` never reads as a green
//! test run.

use crate::diff::{Change, Example};
use crate::gate::Gate;
use std::fmt::Write as _;

/// What a test case found.
enum Status {
    /// It passes; the optional text explains a pass that is not plain.
    Pass(Option<String>),
    /// It fails the gate: message, type, details.
    Failure(String, &'static str, String),
    /// It is unknown: message, type, details.
    ///
    /// Unknown is written as `<error>`, not `<skipped>`: every JUnit
    /// consumer counts an error as a broken test, while many render a
    /// skipped test as neutral or even green, and an unknown verdict must
    /// never look like a pass.
    Error(String, &'static str, String),
}

/// One test case.
struct Case {
    name: String,
    classname: &'static str,
    status: Status,
}

/// The gate as JUnit XML.
pub fn gate(g: &Gate) -> String {
    let mut cases: Vec<Case> = Vec::new();
    for i in &g.invariants {
        let mut body = format!("before: {}\nafter: {}\ngate: {}\n", i.before, i.after, i.gate);
        if let Some(d) = &i.detail {
            let _ = writeln!(body, "{}", d);
        }
        if !i.rules.is_empty() {
            body.push_str("rules (AFTER):\n");
            for r in &i.rules {
                let _ = writeln!(body, "  {r}");
            }
        }
        let first = i.detail.as_deref().and_then(|d| d.lines().next()).unwrap_or("");
        let status = match i.gate {
            "fail" => Status::Failure(
                format!("{} is {} on AFTER (before: {}): {first}", i.invariant, i.after, i.before),
                "invariant-violated",
                body,
            ),
            "pass" if i.after == "holds" => Status::Pass(None),
            "pass" => Status::Pass(Some(format!(
                "{} is {} on AFTER but already was {} on BEFORE: it fails the gate only with --strict\n{body}",
                i.invariant, i.after, i.before
            ))),
            _ => Status::Error(format!("{} is unknown on AFTER: {first}", i.invariant), "invariant-unknown", body),
        };
        cases.push(Case { name: i.invariant.to_string(), classname: "natpath.invariant", status });
    }
    let file = g.contracts_file.as_deref().unwrap_or("contracts");
    for c in &g.contracts {
        let at = format!("{file}:{}", c.line);
        let detail = c.detail.clone().unwrap_or_default();
        let body = format!("[[expect]] at {at}\nverdict: {}\n{detail}\n", c.verdict);
        let status = match c.verdict {
            "holds" => Status::Pass(None),
            "violated" => Status::Failure(
                format!("contract `{}` ({at}) is violated: {detail}", c.name),
                "contract-violated",
                body,
            ),
            _ => Status::Error(format!("contract `{}` ({at}) is unknown: {detail}", c.name), "contract-unknown", body),
        };
        cases.push(Case { name: format!("{} ({at})", c.name), classname: "natpath.contract", status });
    }
    for c in &g.changes {
        let Some(ch) = g.diff.changes.get(c.change) else { continue };
        let what = what(ch);
        let mut body = change_body(ch);
        let status = match (c.allowed_by, &g.contracts_file) {
            _ if c.gate == "fail" => Status::Failure(
                format!("{what}: packets meet another fate on {}, and no [[allow]] covers it", ch.nodes.join(", ")),
                "changed-fate",
                body,
            ),
            (Some(l), Some(f)) => {
                body.insert_str(0, &format!("allowed by the [[allow]] at {f}:{l}\n"));
                Status::Pass(Some(body))
            }
            _ => {
                body.insert_str(0, "allowed by --allow-changes\n");
                Status::Pass(Some(body))
            }
        };
        cases.push(Case { name: what, classname: "natpath.change", status });
    }
    for u in &g.diff.unknown {
        cases.push(Case {
            name: u.entry.clone(),
            classname: "natpath.unknown",
            status: Status::Error(
                format!("natpath cannot tell whether these packets meet another fate: {}", first_line(&u.reason)),
                "diff-unknown",
                format!("{}\n{}\n", u.entry, u.reason),
            ),
        });
    }
    if let Some(why) = &g.nothing_in_scope {
        let body = format!("{why}\n");
        let status = if g.diff.allow_empty {
            Status::Pass(Some(format!("accepted by --allow-empty\n{body}")))
        } else {
            Status::Error(format!("nothing in scope: {}", first_line(why)), "nothing-in-scope", body)
        };
        cases.push(Case { name: "nothing in scope".into(), classname: "natpath.scope", status });
    }
    render(g, &cases)
}

/// The XML document.
fn render(g: &Gate, cases: &[Case]) -> String {
    let tests = cases.len();
    let failures = cases.iter().filter(|c| matches!(c.status, Status::Failure(..))).count();
    let errors = cases.iter().filter(|c| matches!(c.status, Status::Error(..))).count();
    let mut o = String::new();
    o.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        o,
        "<testsuites name=\"natpath gate\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"0\">"
    );
    let _ = writeln!(
        o,
        "  <testsuite name=\"natpath gate\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"0\" time=\"0\">"
    );
    o.push_str("    <properties>\n");
    let mut props: Vec<(&str, String)> = vec![
        ("before", g.diff.before.clone()),
        ("after", g.diff.after.clone()),
        ("verdict", g.verdict.to_string()),
        ("exit", g.exit.to_string()),
        ("strict", g.strict.to_string()),
        ("allow-changes", g.allow_changes.to_string()),
    ];
    if let Some(f) = &g.contracts_file {
        props.push(("contracts", f.clone()));
    }
    props.push(("natpath-version", env!("CARGO_PKG_VERSION").to_string()));
    for (k, v) in props {
        let _ = writeln!(o, "      <property name=\"{}\" value=\"{}\"/>", attr(k), attr(&v));
    }
    o.push_str("    </properties>\n");
    for c in cases {
        let head = format!("    <testcase name=\"{}\" classname=\"{}\" time=\"0\"", attr(&c.name), c.classname);
        match &c.status {
            Status::Pass(None) => {
                let _ = writeln!(o, "{head}/>");
            }
            Status::Pass(Some(out)) => {
                let _ = writeln!(o, "{head}>\n      <system-out>{}</system-out>\n    </testcase>", text(out));
            }
            Status::Failure(msg, kind, body) => {
                let _ = writeln!(
                    o,
                    "{head}>\n      <failure message=\"{}\" type=\"{kind}\">{}</failure>\n    </testcase>",
                    attr(msg),
                    text(body)
                );
            }
            Status::Error(msg, kind, body) => {
                let _ = writeln!(
                    o,
                    "{head}>\n      <error message=\"{}\" type=\"{kind}\">{}</error>\n    </testcase>",
                    attr(msg),
                    text(body)
                );
            }
        }
    }
    o.push_str("  </testsuite>\n</testsuites>\n");
    o
}

/// A change's name: `NodePort tcp/32220 (default/nginx:8080-80)` or
/// `other tcp ports`.
fn what(ch: &Change) -> String {
    ch.label()
}

/// A change's details: nodes, sources, then each example.
fn change_body(ch: &Change) -> String {
    let mut b = format!("nodes: {}\nsources: {}\n", ch.nodes.join(", "), ch.sources.join(", "));
    for e in &ch.examples {
        example(&mut b, e);
    }
    b
}

fn example(b: &mut String, e: &Example) {
    let _ = writeln!(b, "\npacket on {}: {} from {}", e.node, e.packet, e.source);
    let _ = writeln!(b, "  before: {}", e.before);
    let _ = writeln!(b, "  after:  {}", e.after);
    for f in &e.before_fates {
        let _ = writeln!(b, "  model before: {f}");
    }
    for f in &e.after_fates {
        let _ = writeln!(b, "  model after:  {f}");
    }
    if !e.steps.is_empty() {
        let _ = writeln!(b, "  steps that differ ({} alike left out):", e.same_steps);
    }
    for s in &e.steps {
        let _ = writeln!(b, "    {s}");
    }
    if !e.rules.is_empty() {
        let _ = writeln!(b, "  rules:");
    }
    for r in &e.rules {
        let _ = writeln!(b, "    {}:{} ({}) {}", r.file, r.line, r.side, r.text);
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// A character XML 1.0 can carry at all (escaped or not).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Text content: `&`, `<` and `>` escaped, characters XML cannot carry
/// replaced by U+FFFD.
fn text(s: &str) -> String {
    escape(s, false)
}

/// An attribute value in double quotes: also `"` and `'`, and the
/// whitespace an XML parser would otherwise normalise to spaces.
fn attr(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, attribute: bool) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' if attribute => o.push_str("&quot;"),
            '\'' if attribute => o.push_str("&apos;"),
            '\n' if attribute => o.push_str("&#10;"),
            '\r' if attribute => o.push_str("&#13;"),
            '\t' if attribute => o.push_str("&#9;"),
            c if xml_char(c) => o.push(c),
            _ => o.push('\u{FFFD}'),
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_xml_needs() {
        assert_eq!(attr("a\"b'<c>&\nd"), "a&quot;b&apos;&lt;c&gt;&amp;&#10;d");
        assert_eq!(text("]]> & <x>\u{1}"), "]]&gt; &amp; &lt;x&gt;\u{FFFD}");
    }
}
