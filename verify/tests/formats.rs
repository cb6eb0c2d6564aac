//! The CI formats of `natpath gate` (and `natpath diff --format markdown`)
//! checked against what their consumers accept, on real outputs: a failing
//! gate (corpus/seed-ipip-remote -> corpus/broken-no-mark-masq), a passing
//! one (-> corpus/pairs/renamed-chains/after), one with a contracts file
//! (verify/tests/data/contracts.toml), the gate of every pair of
//! corpus/pairs (plain, and with `--allow-changes --strict`), and one with
//! unknown items and hostile text built in-process.
//!
//! - SARIF validates against the OASIS SARIF 2.1.0 JSON schema
//!   (verify/tests/data/sarif-schema-2.1.0.json, see PROVENANCE.md), and
//!   its results point at files and lines that exist.
//! - JUnit XML validates against the Jenkins xUnit plugin's JUnit schema
//!   (verify/tests/data/junit-10.xsd) with `xmllint --noout --schema`, from
//!   Debian's libxml2-utils; scripts/setup installs it, so a missing
//!   xmllint fails this test rather than skipping it. Its counts match the
//!   gate's failing and unknown items.
//! - Markdown: every table row has as many cells as its header, every
//!   `<details>` is closed, the verdict is the first line, and the whole
//!   stays under 60 KB.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use natpath_verify::gate::{Contracts, Gate, GateOptions};
use natpath_verify::report;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BEFORE: &str = "corpus/seed-ipip-remote";
const BROKEN: &str = "corpus/broken-no-mark-masq";
const HARMLESS: &str = "corpus/pairs/renamed-chains/after";
const CONTRACTS: &str = "verify/tests/data/contracts.toml";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Run natpath in the workspace root (so that paths in its output are
/// relative as given); returns the exit code and stdout.
#[track_caller]
fn natpath(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_natpath")).current_dir(root()).args(args).output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(matches!(code, 0 | 1 | 3), "natpath {args:?} exited {code}: {}", String::from_utf8_lossy(&out.stderr));
    (code, String::from_utf8(out.stdout).unwrap())
}

/// Every format of one gate, from the command line.
struct Outputs {
    code: i32,
    json: Value,
    junit: String,
    sarif: Value,
    markdown: String,
}

fn gate_outputs(extra: &[&str]) -> Outputs {
    let run = |format: &str| {
        let mut args = vec!["gate"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--format", format]);
        natpath(&args)
    };
    let (code, json) = run("json");
    let json: Value = serde_json::from_str(&json).unwrap();
    let (c2, junit) = run("junit");
    let (c3, sarif) = run("sarif");
    let (c4, markdown) = run("markdown");
    assert_eq!([c2, c3, c4], [code; 3], "the exit code depends on the format");
    assert_eq!(json["exit"], code);
    Outputs { code, json, junit, sarif: serde_json::from_str(&sarif).unwrap(), markdown }
}

// ---------------------------------------------------------------------------
// Checkers.

fn sarif_validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(data("sarif-schema-2.1.0.json")).unwrap()).unwrap();
    assert_eq!(schema["title"], "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema");
    jsonschema::options().should_validate_formats(true).build(&schema).unwrap()
}

/// Valid SARIF 2.1.0, with the fields natpath promises.
#[track_caller]
fn check_sarif(what: &str, doc: &Value) {
    let v = sarif_validator();
    let errors: Vec<String> = v.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{what}: not SARIF 2.1.0:\n{}", errors.join("\n"));
    assert_eq!(doc["$schema"], "https://json.schemastore.org/sarif-2.1.0.json");
    assert_eq!(doc["version"], "2.1.0");
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert_eq!(driver["name"], "natpath");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    let ids: Vec<&str> = driver["rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    for id in natpath_verify::invariants::NAMES.iter().chain(&["changed-fate", "contract"]) {
        assert_eq!(ids.iter().filter(|x| *x == id).count(), 1, "{what}: rule {id} in {ids:?}");
    }
    for r in runs[0]["results"].as_array().unwrap() {
        let i = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(r["ruleId"], ids[i], "{what}: ruleIndex of {r}");
        assert!(["error", "warning", "note"].contains(&r["level"].as_str().unwrap()));
        assert!(!r["message"]["text"].as_str().unwrap().is_empty());
        let locs = r["locations"].as_array().unwrap();
        assert!(!locs.is_empty(), "{what}: a result without a location: {r}");
        for l in locs {
            let a = &l["physicalLocation"]["artifactLocation"];
            let uri = a["uri"].as_str().unwrap();
            let path = match uri.strip_prefix("file://") {
                Some(abs) => {
                    assert!(a.get("uriBaseId").is_none());
                    PathBuf::from(abs)
                }
                None => {
                    assert_eq!(a["uriBaseId"], "%SRCROOT%", "{what}: {l}");
                    root().join(uri)
                }
            };
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{what}: {uri}: {e}"));
            if let Some(line) = l["physicalLocation"]["region"]["startLine"].as_u64() {
                assert!(line >= 1 && line as usize <= text.lines().count(), "{what}: {uri}:{line} is past its end");
            }
        }
    }
}

/// The results of a SARIF log.
fn results(doc: &Value) -> Vec<Value> {
    doc["runs"][0]["results"].as_array().unwrap().clone()
}

fn has_location(r: &Value, uri: &str, line: u64) -> bool {
    r["locations"].as_array().unwrap().iter().any(|l| {
        l["physicalLocation"]["artifactLocation"]["uri"] == uri && l["physicalLocation"]["region"]["startLine"] == line
    })
}

/// Valid against the JUnit XSD (by xmllint).
#[track_caller]
fn check_junit_xsd(what: &str, xml: &str) {
    // A directory of this call's own, gone before anything is asserted.
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("natpath-formats-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{}.xml", what.replace(|c: char| !c.is_ascii_alphanumeric(), "-")));
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("xmllint").arg("--noout").arg("--schema").arg(data("junit-10.xsd")).arg(&file).output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!(
            "xmllint cannot run ({e}): install Debian's libxml2-utils (scripts/setup does); the JUnit check is not skipped"
        ),
    };
    assert!(
        out.status.success(),
        "{what}: JUnit XML does not validate against junit-10.xsd:\n{}\n{xml}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An attribute of the first element named `tag`.
fn attr(xml: &str, tag: &str, name: &str) -> usize {
    let start = xml.find(&format!("<{tag} ")).unwrap_or_else(|| panic!("no <{tag}>"));
    let head = &xml[start..start + xml[start..].find('>').unwrap()];
    let at =
        head.find(&format!(" {name}=\"")).unwrap_or_else(|| panic!("<{tag}> has no {name}: {head}")) + name.len() + 3;
    head[at..at + head[at..].find('"').unwrap()].parse().unwrap()
}

/// The gate's failing and unknown items, from its JSON.
fn items(g: &Value) -> (usize, usize, usize) {
    let count = |k: &str, f: &dyn Fn(&Value) -> bool| g[k].as_array().unwrap().iter().filter(|x| f(x)).count();
    let failing = count("invariants", &|i| i["gate"] == "fail")
        + count("contracts", &|c| c["verdict"] == "violated")
        + count("changes", &|c| c["gate"] == "fail");
    let unknown = count("invariants", &|i| i["gate"] == "unknown")
        + count("contracts", &|c| c["verdict"] == "unknown")
        + g["diff"]["unknown"].as_array().unwrap().len();
    let all = ["invariants", "contracts", "changes"].iter().map(|k| g[*k].as_array().unwrap().len()).sum::<usize>()
        + g["diff"]["unknown"].as_array().unwrap().len();
    (failing, unknown, all)
}

/// JUnit counts agree with the gate and with the elements.
#[track_caller]
fn check_junit_counts(what: &str, xml: &str, failing: usize, unknown: usize, all: usize) {
    check_junit_xsd(what, xml);
    for tag in ["testsuites", "testsuite"] {
        assert_eq!(attr(xml, tag, "tests"), all, "{what}: <{tag} tests>");
        assert_eq!(attr(xml, tag, "failures"), failing, "{what}: <{tag} failures>");
        assert_eq!(attr(xml, tag, "errors"), unknown, "{what}: <{tag} errors>");
    }
    assert_eq!(attr(xml, "testsuite", "skipped"), 0);
    assert_eq!(xml.matches("<testcase ").count(), all, "{what}");
    assert_eq!(xml.matches("<failure ").count(), failing, "{what}");
    assert_eq!(xml.matches("<error ").count(), unknown, "{what}");
    assert!(xml.contains("<testsuite name=\"natpath gate\""));
}

/// The cells of a table row, split at pipes not escaped.
fn cells(row: &str) -> usize {
    let (mut n, mut prev) = (0usize, ' ');
    for c in row.chars() {
        if c == '|' && prev != '\\' {
            n += 1;
        }
        prev = c;
    }
    n.saturating_sub(1)
}

/// Tables well-formed, details balanced, fences closed, size bounded.
#[track_caller]
fn check_markdown(what: &str, md: &str, first: &str) {
    assert!(md.starts_with(first), "{what}: the first line is not the verdict:\n{md}");
    assert!(md.len() <= report::markdown::LIMIT, "{what}: {} bytes", md.len());
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    let mut tables = 0;
    let mut fence: Option<String> = None;
    while i < lines.len() {
        let l = lines[i];
        if let Some(f) = &fence {
            if l == f {
                fence = None;
            }
            i += 1;
            continue;
        }
        if l.starts_with("```") {
            fence = Some(l.chars().take_while(|c| *c == '`').collect());
            i += 1;
            continue;
        }
        if l.starts_with('|') {
            tables += 1;
            let width = cells(l);
            assert!(width >= 2, "{what}: {l}");
            let sep = lines.get(i + 1).unwrap_or(&"");
            assert_eq!(*sep, format!("|{}", " --- |".repeat(width)), "{what}: no separator under {l}");
            assert!(i == 0 || lines[i - 1].is_empty(), "{what}: no blank line before the table {l}");
            i += 2;
            while i < lines.len() && lines[i].starts_with('|') {
                assert_eq!(cells(lines[i]), width, "{what}: row {}", lines[i]);
                assert!(lines[i].ends_with(" |"), "{what}: row {}", lines[i]);
                i += 1;
            }
            assert!(i == lines.len() || lines[i].is_empty(), "{what}: no blank line after a table: {}", lines[i]);
            continue;
        }
        i += 1;
    }
    assert!(fence.is_none(), "{what}: a code block is not closed");
    let (open, close) = (md.matches("<details>").count(), md.matches("</details>").count());
    assert_eq!(open, close, "{what}: details not balanced");
    assert_eq!(md.matches("<summary>").count(), md.matches("</summary>").count());
    let _ = tables;
}

/// How many rows the table under `### title` has.
fn rows_under(md: &str, title: &str) -> usize {
    let at = md.find(&format!("### {title}")).unwrap_or_else(|| panic!("no section {title}:\n{md}"));
    md[at..].lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')).count().saturating_sub(2)
}

// ---------------------------------------------------------------------------
// Real outputs.

#[test]
fn a_failing_gate_in_every_ci_format() {
    let o = gate_outputs(&[BEFORE, BROKEN]);
    assert_eq!((o.code, o.json["verdict"].as_str()), (1, Some("fail")));
    let (failing, unknown, all) = items(&o.json);
    // nodeport-reachable newly violated, and the NodePort's change.
    assert_eq!((failing, unknown, all), (2, 0, 10));
    check_junit_counts("failing gate", &o.junit, failing, unknown, all);
    assert!(o.junit.contains(
        "<testcase name=\"nodeport-reachable\" classname=\"natpath.invariant\" time=\"0\">\n      <failure "
    ));
    assert!(o
        .junit
        .contains("<testcase name=\"NodePort tcp/32220 (default/nginx:8080-80)\" classname=\"natpath.change\""));
    assert!(o.junit.contains("tcp 10.0.0.53:44800 -&gt; 10.0.0.51:32220"), "packets are escaped");
    assert!(o.junit.contains("corpus/seed-ipip-remote/nodes/node1/iptables-save:163 (before)"));

    check_sarif("failing gate", &o.sarif);
    let rs = results(&o.sarif);
    assert_eq!(rs.iter().filter(|r| r["level"] == "error").count(), failing);
    assert_eq!(rs.len(), 2, "{rs:?}");
    let change = rs.iter().find(|r| r["ruleId"] == "changed-fate").unwrap();
    assert_eq!(change["level"], "error");
    // The first rule responsible: the removed jump to KUBE-MARK-MASQ, on
    // BEFORE's dump.
    let first = &change["locations"][0]["physicalLocation"];
    assert_eq!(first["artifactLocation"]["uri"], "corpus/seed-ipip-remote/nodes/node1/iptables-save");
    assert_eq!(first["region"]["startLine"], 163);
    let dump = std::fs::read_to_string(root().join("corpus/seed-ipip-remote/nodes/node1/iptables-save")).unwrap();
    let line163 = dump.lines().nth(162).unwrap();
    assert!(line163.starts_with("-A KUBE-NODEPORTS") && line163.ends_with("-j KUBE-MARK-MASQ"), "{line163}");
    // A rule AFTER newly takes points at AFTER's dump.
    assert!(has_location(change, "corpus/broken-no-mark-masq/nodes/node1/iptables-save", 164), "{change}");
    let inv = rs.iter().find(|r| r["ruleId"] == "nodeport-reachable").unwrap();
    assert_eq!(inv["level"], "error");
    assert!(has_location(inv, "corpus/broken-no-mark-masq/nodes/node1/iptables-save", 178), "{inv}");

    check_markdown("failing gate", &o.markdown, "**natpath gate: FAIL**");
    assert_eq!(rows_under(&o.markdown, "Invariants"), 1, "only the non-holding invariants");
    assert!(o.markdown.contains("8 of 9 hold on AFTER"));
    assert_eq!(rows_under(&o.markdown, "Changes"), 1);
    assert!(o.markdown.contains("| **no** |"));
    assert_eq!(o.markdown.matches("<details>").count(), 1);
    assert!(o.markdown.contains("```diff\n- node1: PREROUTING nat KUBE-NODEPORTS"));
}

#[test]
fn a_passing_gate_in_every_ci_format() {
    let o = gate_outputs(&[BEFORE, HARMLESS]);
    assert_eq!((o.code, o.json["verdict"].as_str()), (0, Some("pass")));
    let (failing, unknown, all) = items(&o.json);
    assert_eq!((failing, unknown, all), (0, 0, 9));
    check_junit_counts("passing gate", &o.junit, 0, 0, 9);
    check_sarif("passing gate", &o.sarif);
    assert!(results(&o.sarif).is_empty(), "{}", o.sarif);
    check_markdown("passing gate", &o.markdown, "**natpath gate: PASS**");
    assert!(o.markdown.contains("9 of 9 hold on AFTER where the change reaches"), "{}", o.markdown);
    assert!(!o.markdown.contains("<details>"));
}

#[test]
fn a_gate_with_contracts_in_every_ci_format() {
    let o = gate_outputs(&[BEFORE, BROKEN, "--contracts", CONTRACTS]);
    assert_eq!(o.code, 1);
    let (failing, unknown, all) = items(&o.json);
    // nodeport-reachable, and the contract on node1; the change is allowed.
    assert_eq!((failing, unknown, all), (2, 0, 12));
    check_junit_counts("gate with contracts", &o.junit, failing, unknown, all);
    assert!(o.junit.contains("classname=\"natpath.contract\""));
    assert!(
        o.junit.contains("name=\"node1 delivers &lt;to nginx&gt; &amp; &quot;co&quot; | piped (verify/tests/data/contracts.toml:18)\""),
        "{}",
        o.junit
    );
    assert!(o.junit.contains("allowed by the [[allow]] at verify/tests/data/contracts.toml:6"));

    check_sarif("gate with contracts", &o.sarif);
    let rs = results(&o.sarif);
    let contract = rs.iter().find(|r| r["ruleId"] == "contract").unwrap();
    assert_eq!(contract["level"], "error");
    assert!(has_location(contract, "verify/tests/data/contracts.toml", 18), "{contract}");
    assert_eq!(rs.iter().filter(|r| r["ruleId"] == "contract").count(), 1, "a holding contract is no result");
    let change = rs.iter().find(|r| r["ruleId"] == "changed-fate").unwrap();
    assert_eq!(change["level"], "note", "an allowed change is a note");
    assert!(has_location(change, "corpus/seed-ipip-remote/nodes/node1/iptables-save", 163));
    assert_eq!(rs.iter().filter(|r| r["level"] == "error").count(), failing);

    check_markdown("gate with contracts", &o.markdown, "**natpath gate: FAIL**");
    assert_eq!(rows_under(&o.markdown, "Contracts"), 2);
    assert!(o.markdown.contains("\\| piped"), "a pipe in a cell is escaped");
    assert!(o.markdown.contains("yes, `verify/tests/data/contracts.toml:6`"));
}

#[test]
fn diff_as_markdown() {
    let (code, md) = natpath(&["diff", BEFORE, BROKEN, "--format", "markdown"]);
    assert_eq!(code, 1);
    check_markdown("diff", &md, "**natpath diff: CHANGED**");
    assert_eq!(rows_under(&md, "Changes"), 1);
    assert_eq!(md.matches("<details>").count(), 1);
    assert!(md.contains("```diff\n"));
    let (code, md) = natpath(&["diff", BEFORE, HARMLESS, "--format", "markdown"]);
    assert_eq!(code, 0);
    check_markdown("harmless diff", &md, "**natpath diff: UNCHANGED**");
    assert!(!md.contains("### Changes"));
}

// ---------------------------------------------------------------------------
// Unknown items and hostile text, in-process.

/// The failing gate, computed in-process (absolute paths), with unknown
/// items and text full of what XML, JSON and Markdown must escape added.
fn hostile_gate() -> Gate {
    let b = natpath_model::snapshot::load(&root().join(BEFORE)).unwrap();
    let a = natpath_model::snapshot::load(&root().join(BROKEN)).unwrap();
    let file = data("contracts.toml");
    let contracts = Contracts::read(&file).unwrap();
    let names = (root().join(BEFORE).display().to_string(), root().join(BROKEN).display().to_string());
    let mut g = natpath_verify::gate::gate(
        &b,
        &a,
        (&names.0, &names.1),
        Some(&contracts),
        &GateOptions::default(),
        &|_: usize, _: usize, _: &str| {},
    )
    .unwrap();
    let nasty = "a <b> & \"c\" 'd' | `e` ]]> \u{1}\u{7f} ```\nsecond line";
    let dump = format!("{}/nodes/node2/iptables-save", names.1);
    if let Some(i) = g.invariants.iter_mut().find(|i| i.invariant == "masq-iff-mark") {
        i.after = "unknown";
        i.gate = "unknown";
        i.detail = Some(format!("node2 NodePort tcp/32220: {dump}:40 (raw cali-PREROUTING rule 1): {nasty}"));
    }
    if let Some(c) = g.contracts.first_mut() {
        c.verdict = "unknown";
        c.detail = Some(nasty.into());
    }
    g.diff.unknown.push(natpath_verify::diff::Unknown {
        entry: format!("node1 other udp ports from client {nasty}"),
        reason: nasty.into(),
    });
    g.verdict = "fail";
    g
}

#[test]
fn unknown_items_are_errors_and_warnings_never_passes() {
    let g = hostile_gate();
    let json: Value = serde_json::from_str(&report::gate::json(&g)).unwrap();
    let (failing, unknown, all) = items(&json);
    assert_eq!((failing, unknown), (2, 3), "{json}");

    let xml = report::junit::gate(&g);
    check_junit_counts("hostile gate", &xml, failing, unknown, all);
    assert!(xml.contains("<error message=\"masq-iff-mark is unknown on AFTER"), "{xml}");
    assert!(xml.contains("a &lt;b&gt; &amp; \"c\" 'd' | `e` ]]&gt; \u{FFFD}\u{7f} ```\nsecond line"), "{xml}");
    assert!(!xml.contains("<skipped"));

    let sarif: Value = serde_json::from_str(&report::sarif::gate(&g)).unwrap();
    check_sarif("hostile gate", &sarif);
    let rs = results(&sarif);
    assert_eq!(rs.iter().filter(|r| r["level"] == "error").count(), failing);
    assert_eq!(rs.iter().filter(|r| r["level"] == "warning").count(), unknown);
    // An unknown invariant points at the rule its reason names; an unknown
    // entry of the diff at its node's dump in AFTER.
    let inv = rs.iter().find(|r| r["ruleId"] == "masq-iff-mark").unwrap();
    assert!(
        has_location(
            inv,
            &format!("file://{dump}", dump = root().join(BROKEN).join("nodes/node2/iptables-save").display()),
            40
        ),
        "{inv}"
    );
    let entry = rs.iter().find(|r| r["message"]["text"].as_str().unwrap().contains("other udp ports")).unwrap();
    assert_eq!(entry["level"], "warning");
    let uri = entry["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str().unwrap();
    assert!(
        uri.starts_with("file://") && uri.ends_with("/corpus/broken-no-mark-masq/nodes/node1/iptables-save"),
        "{uri}"
    );

    let md = report::markdown::gate(&g);
    check_markdown("hostile gate", &md, "**natpath gate: FAIL**");
    assert_eq!(rows_under(&md, "Unknown"), 1);
    assert!(md.contains("1 invariant is unknown"));
}

#[test]
fn the_checkers_refuse_broken_documents() {
    let g = hostile_gate();
    let sarif: Value = serde_json::from_str(&report::sarif::gate(&g)).unwrap();
    let v = sarif_validator();
    assert!(v.is_valid(&sarif));
    for (path, bad) in [
        ("/runs/0/results/0/level", Value::from("fatal")),
        ("/runs/0/results/0/locations/0/physicalLocation/region/startLine", Value::from(0)),
        ("/runs/0/tool/driver/rules/0/surprise", Value::Bool(true)),
        ("/version", Value::from("2.0.0")),
    ] {
        let mut x = sarif.clone();
        let (parent, key) = path.rsplit_once('/').unwrap();
        x.pointer_mut(parent).unwrap().as_object_mut().unwrap().insert(key.into(), bad);
        assert!(!v.is_valid(&x), "the SARIF schema accepts {path} broken");
    }
    let mut x = sarif;
    x["runs"][0]["tool"]["driver"].as_object_mut().unwrap().remove("name");
    assert!(!v.is_valid(&x), "the SARIF schema accepts a driver without a name");

    let xml = report::junit::gate(&g);
    let broken = xml.replacen("<testcase name=\"masq-iff-mark\" ", "<testcase ", 1);
    assert_ne!(broken, xml);
    let r = std::panic::catch_unwind(|| check_junit_xsd("broken", &broken));
    assert!(r.is_err(), "the JUnit XSD accepts a test case without a name");
    let r = std::panic::catch_unwind(|| check_junit_xsd("ill-formed", &xml.replacen("&lt;", "<", 1)));
    assert!(r.is_err(), "xmllint accepts ill-formed XML");
}

#[test]
fn the_gate_of_every_pair_validates_in_every_ci_format() {
    let mut n = 0;
    for e in std::fs::read_dir(root().join("corpus/pairs")).unwrap() {
        let dir = e.unwrap().path();
        let Ok(text) = std::fs::read_to_string(dir.join("pair.toml")) else { continue };
        let t: toml::Table = toml::from_str(&text).unwrap();
        let rel = dir.strip_prefix(root()).unwrap().to_path_buf();
        let side = |k: &str| rel.join(t[k].as_str().unwrap()).to_str().unwrap().to_string();
        let (b, a) = (side("before"), side("after"));
        for extra in [&[][..], &["--allow-changes", "--strict"][..]] {
            let mut args = vec![b.as_str(), a.as_str()];
            args.extend_from_slice(extra);
            let what = format!("gate {} {extra:?}", rel.display());
            let o = gate_outputs(&args);
            let (failing, unknown, all) = items(&o.json);
            check_junit_counts(&what, &o.junit, failing, unknown, all);
            check_sarif(&what, &o.sarif);
            let rs = results(&o.sarif);
            assert_eq!(rs.iter().filter(|r| r["level"] == "error").count(), failing, "{what}");
            assert_eq!(rs.iter().filter(|r| r["level"] == "warning").count(), unknown, "{what}");
            let word = o.json["verdict"].as_str().unwrap().to_uppercase();
            check_markdown(&what, &o.markdown, &format!("**natpath gate: {word}**"));
            n += 1;
        }
    }
    assert!(n >= 14, "{n}");
}
