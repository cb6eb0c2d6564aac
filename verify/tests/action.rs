//! The GitHub action run locally: `scripts/gate-action` (the action's one
//! script) with this build's `natpath` first on PATH and a temporary file
//! as `$GITHUB_STEP_SUMMARY`, on corpus pairs that pass, fail and are bad
//! input; a stand-in natpath for the exit codes a real run cannot be made
//! to give on demand (unknown, a crash); `action.yml` declaring every input
//! the script reads; and `examples/contracts.toml` passing the gate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

fn corpus(name: &str) -> String {
    root().join("corpus").join(name).display().to_string()
}

/// A directory of its own under the system's temporary directory, removed
/// when dropped.
struct Tmp(PathBuf);

impl Tmp {
    fn new(name: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("natpath-action-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a run of the script left.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// `$GITHUB_STEP_SUMMARY`, when the script wrote it.
    summary: Option<String>,
    /// `$GITHUB_OUTPUT`'s `name=value` lines.
    outputs: BTreeMap<String, String>,
}

/// The directory of this build's natpath.
fn natpath_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_natpath")).parent().unwrap().to_path_buf()
}

/// Run scripts/gate-action from the repository root with `bin` first on
/// PATH, the summary and outputs in `tmp`, and only the `NATPATH_GATE_*`
/// inputs of `env` (none inherited from the caller).
#[track_caller]
fn gate_action(tmp: &Tmp, bin: &Path, env: &[(&str, &str)]) -> Run {
    let summary = tmp.path("summary.md");
    let outputs = tmp.path("outputs");
    let _ = std::fs::remove_file(&summary);
    let _ = std::fs::remove_file(&outputs);
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("bash");
    cmd.arg(root().join("scripts/gate-action"))
        .current_dir(root())
        .env("PATH", path)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs)
        .env("RUNNER_TEMP", &tmp.0)
        .env_remove("GITHUB_ACTIONS")
        .env_remove("NO_COLOR");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("NATPATH_GATE_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("bash runs");
    let outputs = std::fs::read_to_string(&outputs)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        summary: std::fs::read_to_string(&summary).ok(),
        outputs,
    }
}

fn show(r: &Run) -> String {
    format!("exit {}\n--- stdout\n{}\n--- stderr\n{}\n--- summary\n{:?}", r.code, r.stdout, r.stderr, r.summary)
}

#[test]
fn the_script_is_valid_bash() {
    let out = Command::new("bash").arg("-n").arg(root().join("scripts/gate-action")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_harmless_rewrite_passes_with_a_summary() {
    let tmp = Tmp::new("pass");
    let before = corpus("seed-ipip-remote");
    let after = corpus("pairs/renamed-chains/after");
    let contracts = root().join("examples/contracts.toml").display().to_string();
    let json = tmp.path("gate.json").display().to_string();
    let r = gate_action(
        &tmp,
        &natpath_dir(),
        &[
            ("NATPATH_GATE_BEFORE", &before),
            ("NATPATH_GATE_AFTER", &after),
            ("NATPATH_GATE_CONTRACTS", &contracts),
            ("NATPATH_GATE_JSON", &json),
        ],
    );
    assert_eq!(r.code, 0, "{}", show(&r));
    // The log: the text report.
    assert!(r.stdout.contains(&format!("natpath gate {before} {after}: pass")), "{}", show(&r));
    assert!(r.stdout.contains("nginx answers the outside client on every node: holds"), "{}", show(&r));
    let summary = r.summary.as_deref().unwrap_or_else(|| panic!("no summary written\n{}", show(&r)));
    // Markdown when this natpath has it, else the text in a code block.
    assert!(summary.to_lowercase().contains("pass"), "{summary}");
    assert!(summary.contains("nginx answers the outside client on every node"), "{summary}");
    assert_eq!(r.outputs.get("verdict").map(String::as_str), Some("pass"), "{}", show(&r));
    assert_eq!(r.outputs.get("exit-code").map(String::as_str), Some("0"), "{}", show(&r));
    // The JSON run, kept where asked.
    let kept = std::fs::read_to_string(&json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&kept).unwrap();
    assert_eq!(v["schema"], "natpath.gate/1");
    assert_eq!(v["verdict"], "pass");
    assert_eq!(v["exit"], 0);
}

#[test]
fn a_breaking_change_fails_and_the_summary_names_the_service() {
    let tmp = Tmp::new("fail");
    let before = corpus("seed-ipip-remote");
    let after = corpus("broken-no-mark-masq");
    let sarif = tmp.path("natpath.sarif").display().to_string();
    let r = gate_action(
        &tmp,
        &natpath_dir(),
        &[("NATPATH_GATE_BEFORE", &before), ("NATPATH_GATE_AFTER", &after), ("NATPATH_GATE_SARIF", &sarif)],
    );
    assert_eq!(r.code, 1, "{}", show(&r));
    assert!(r.stdout.contains(&format!("natpath gate {before} {after}: fail")), "{}", show(&r));
    let summary = r.summary.as_deref().unwrap_or_else(|| panic!("no summary written\n{}", show(&r)));
    assert!(summary.contains("default/nginx:8080-80"), "{summary}");
    assert!(summary.to_lowercase().contains("fail"), "{summary}");
    assert_eq!(r.outputs.get("verdict").map(String::as_str), Some("fail"), "{}", show(&r));
    assert_eq!(r.outputs.get("exit-code").map(String::as_str), Some("1"), "{}", show(&r));
    // SARIF: written when this natpath has it, otherwise a warning and no file.
    match std::fs::read_to_string(&sarif) {
        Ok(s) => {
            assert!(s.contains("2.1.0"), "{s}");
            assert_eq!(r.outputs.get("sarif"), Some(&sarif));
        }
        Err(_) => assert!(r.stderr.contains("SARIF is not available"), "{}", show(&r)),
    }
}

#[test]
fn an_unknown_key_in_the_contracts_is_bad_input_at_its_line() {
    let tmp = Tmp::new("badkey");
    let contracts = tmp.write(
        "contracts.toml",
        "[[expect]]\nfrom = \"client\"\nservice = \"default/nginx:8080-80\"\nfate = \"delivered\"\nport = 32220\n",
    );
    let before = corpus("seed-ipip-remote");
    let after = corpus("pairs/renamed-chains/after");
    let r = gate_action(
        &tmp,
        &natpath_dir(),
        &[
            ("NATPATH_GATE_BEFORE", &before),
            ("NATPATH_GATE_AFTER", &after),
            ("NATPATH_GATE_CONTRACTS", &contracts),
            ("GITHUB_ACTIONS", "true"),
        ],
    );
    assert_eq!(r.code, 2, "{}", show(&r));
    let msg = format!(
        "{contracts}:5: unknown field `port`, expected one of `name`, `from`, `service`, `nodes`, `fate`, `source`"
    );
    assert!(r.stderr.contains(&format!("natpath: {msg}")), "{}", show(&r));
    // On GitHub, an annotation at the file and line.
    assert!(r.stdout.contains(&format!("::error file={contracts},line=5,title=natpath gate::")), "{}", show(&r));
    let summary = r.summary.as_deref().unwrap_or_else(|| panic!("no summary written\n{}", show(&r)));
    assert!(summary.contains(&msg), "{summary}");
    assert_eq!(r.outputs.get("verdict").map(String::as_str), Some("bad-input"), "{}", show(&r));
}

#[test]
fn bad_action_inputs_are_bad_input() {
    let tmp = Tmp::new("inputs");
    let before = corpus("seed-ipip-remote");
    for (env, words) in [
        (vec![("NATPATH_GATE_AFTER", before.as_str())], "input `before` is required"),
        (
            vec![
                ("NATPATH_GATE_BEFORE", before.as_str()),
                ("NATPATH_GATE_AFTER", before.as_str()),
                ("NATPATH_GATE_STRICT", "maybe"),
            ],
            "input `strict` is `maybe`: expected true or false",
        ),
        (
            vec![
                ("NATPATH_GATE_BEFORE", before.as_str()),
                ("NATPATH_GATE_AFTER", before.as_str()),
                ("NATPATH_GATE_FORMAT", "html"),
            ],
            "input `format` is `html`",
        ),
        (
            vec![
                ("NATPATH_GATE_BEFORE", before.as_str()),
                ("NATPATH_GATE_AFTER", before.as_str()),
                ("NATPATH_GATE_NATPATH_VERSION", "v999.0.0"),
            ],
            "input `natpath-version` is `999.0.0`",
        ),
    ] {
        let r = gate_action(&tmp, &natpath_dir(), &env);
        assert_eq!(r.code, 2, "{}", show(&r));
        assert!(r.stderr.contains(words), "{words}\n{}", show(&r));
    }
}

/// A stand-in natpath: `--version`, `gate --help` listing every format, a
/// JSON run exiting `$STUB_JSON_EXIT` and every other run `$STUB_OTHER_EXIT`
/// (Markdown refused as usage, exit 2, when `$STUB_NO_MARKDOWN` is set).
fn stub(tmp: &Tmp) -> PathBuf {
    let bin = tmp.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = "#!/usr/bin/env bash\n\
case \"$*\" in\n\
  --version) echo 'natpath 0.0.0-stub' ;;\n\
  'gate --help') printf '          - text: Text\\n          - json: JSON\\n          - junit: JUnit\\n          - sarif: SARIF\\n          - markdown: Markdown\\n' ;;\n\
  *'--format json'*) echo '{}'; echo 'stub: json run' >&2; exit \"$STUB_JSON_EXIT\" ;;\n\
  *'--format markdown'*) if [ -n \"${STUB_NO_MARKDOWN:-}\" ]; then echo 'natpath: this --format is being written' >&2; exit 2; fi; echo \"stub report: $*\"; exit \"$STUB_OTHER_EXIT\" ;;\n\
  *) echo \"stub report: $*\"; exit \"$STUB_OTHER_EXIT\" ;;\n\
esac\n";
    let p = bin.join("natpath");
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn an_unknown_or_a_crash_never_passes() {
    let tmp = Tmp::new("unknown");
    let bin = stub(&tmp);
    let snap = corpus("seed-ipip-remote");
    let run = |json: &str, other: &str| {
        gate_action(
            &tmp,
            &bin,
            &[
                ("NATPATH_GATE_BEFORE", &snap),
                ("NATPATH_GATE_AFTER", &snap),
                ("STUB_JSON_EXIT", json),
                ("STUB_OTHER_EXIT", other),
            ],
        )
    };
    // natpath's unknown is the job's.
    let r = run("3", "3");
    assert_eq!(r.code, 3, "{}", show(&r));
    assert_eq!(r.outputs.get("verdict").map(String::as_str), Some("unknown"), "{}", show(&r));
    assert!(r.summary.is_some(), "{}", show(&r));
    // A natpath that dies (a panic is 101) is unknown, not its own code.
    let r = run("101", "101");
    assert_eq!(r.code, 3, "{}", show(&r));
    assert!(r.stderr.contains("natpath gate exited 101"), "{}", show(&r));
    // A pass that a report's own run contradicts is unknown.
    let r = run("0", "3");
    assert_eq!(r.code, 3, "{}", show(&r));
    // A fail stays a fail whatever the reports' runs say.
    let r = run("1", "0");
    assert_eq!(r.code, 1, "{}", show(&r));
    // Each format is run once: the log and the summary (markdown), no more.
    let r = run("0", "0");
    assert_eq!(r.code, 0, "{}", show(&r));
    assert_eq!(r.stdout.matches("stub report:").count(), 1, "{}", show(&r));
    let summary = r.summary.unwrap();
    assert!(summary.contains("stub report:") && summary.contains("--format markdown"), "{summary}");
}

/// The `inputs:` of action.yml (two-space keys under the top-level key).
fn declared_inputs(yml: &str) -> Vec<String> {
    let mut inputs = Vec::new();
    let mut inside = false;
    for line in yml.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            inside = line.trim_end() == "inputs:";
            continue;
        }
        if inside && line.starts_with("  ") && !line.starts_with("   ") {
            if let Some(name) = line.trim().strip_suffix(':') {
                inputs.push(name.to_string());
            }
        }
    }
    inputs
}

/// `NATPATH_GATE_*` names in `text`.
fn gate_vars(text: &str) -> Vec<String> {
    let mut vars: Vec<String> = Vec::new();
    for (i, _) in text.match_indices("NATPATH_GATE_") {
        let name: String =
            text[i..].chars().take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_').collect();
        if !vars.contains(&name) {
            vars.push(name);
        }
    }
    vars
}

#[test]
fn the_action_declares_every_input_the_script_reads() {
    let yml = std::fs::read_to_string(root().join("action.yml")).unwrap();
    let script = std::fs::read_to_string(root().join("scripts/gate-action")).unwrap();
    let inputs = declared_inputs(&yml);
    for want in
        ["before", "after", "contracts", "strict", "allow-changes", "format", "sarif", "install", "natpath-version"]
    {
        assert!(inputs.iter().any(|i| i == want), "action.yml declares no input `{want}`: {inputs:?}");
    }
    // The step's environment: `NATPATH_GATE_X: ${{ inputs.NAME }}`.
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for line in yml.lines() {
        let t = line.trim();
        if let Some((var, value)) = t.split_once(": ${{ inputs.") {
            if var.starts_with("NATPATH_GATE_") {
                let input = value.strip_suffix(" }}").unwrap_or_else(|| panic!("odd line: {line}"));
                env.insert(var.to_string(), input.to_string());
            }
        }
    }
    let read = gate_vars(&script);
    assert!(read.len() >= 10, "{read:?}");
    for var in &read {
        let input =
            env.get(var).unwrap_or_else(|| panic!("scripts/gate-action reads {var}, which action.yml never sets"));
        assert!(inputs.contains(input), "{var} is set from `inputs.{input}`, which action.yml does not declare");
    }
    for var in env.keys() {
        assert!(read.contains(var), "action.yml sets {var}, which scripts/gate-action never reads");
    }
    // Every declared input is used, in the environment or an `if:`.
    for i in &inputs {
        assert!(
            yml.contains(&format!("inputs.{i} ")) || yml.contains(&format!("inputs.{i}}}")),
            "input `{i}` is unused"
        );
    }
    // No expression is pasted into a command line: `run:` holds no `${{`.
    let mut run_indent: Option<usize> = None;
    for line in yml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(ri) = run_indent {
            if line.trim().is_empty() || indent > ri {
                assert!(!line.contains("${{"), "an expression in a run block: {line}");
                continue;
            }
            run_indent = None;
        }
        let t = line.trim_start().trim_start_matches("- ");
        if t.starts_with("run:") {
            assert!(!line.contains("${{"), "an expression in a run line: {line}");
            run_indent = Some(indent);
        }
    }
    assert!(yml.contains("run: bash \"$GITHUB_ACTION_PATH/scripts/gate-action\""));
    assert!(yml.contains("cargo install --locked --path \"$GITHUB_ACTION_PATH/verify\""));
    assert!(yml.contains("libz3-dev"));
    assert!(yml.contains("using: composite"));
}

#[test]
fn the_example_contracts_hold_on_a_harmless_rewrite_and_catch_the_broken_one() {
    let contracts = root().join("examples/contracts.toml");
    let gate = |after: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_natpath"))
            .current_dir(root())
            .args(["gate", "--color", "never", &corpus("seed-ipip-remote"), &corpus(after), "--contracts"])
            .arg(&contracts)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, text) = gate("pairs/renamed-chains/after");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("2 expectations"), "{text}");
    assert_eq!(text.matches(": holds").count(), 2, "{text}");
    assert!(!text.contains("violated"), "{text}");
    let (code, text) = gate("broken-no-mark-masq");
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("nginx answers the outside client on every node: violated\n      node1: tcp client:44800 -> 10.0.0.51:32220 is dropped"),
        "{text}"
    );
}

#[test]
fn without_markdown_the_summary_is_the_text_report() {
    let tmp = Tmp::new("nomarkdown");
    let bin = stub(&tmp);
    let snap = corpus("seed-ipip-remote");
    let r = gate_action(
        &tmp,
        &bin,
        &[
            ("NATPATH_GATE_BEFORE", &snap),
            ("NATPATH_GATE_AFTER", &snap),
            ("STUB_JSON_EXIT", "1"),
            ("STUB_OTHER_EXIT", "1"),
            ("STUB_NO_MARKDOWN", "1"),
        ],
    );
    assert_eq!(r.code, 1, "{}", show(&r));
    let summary = r.summary.clone().unwrap_or_else(|| panic!("no summary written\n{}", show(&r)));
    assert!(summary.starts_with("## natpath gate: fail (exit 1)\n\n````text\nstub report: "), "{summary}");
    assert!(summary.contains("--format text"), "{summary}");
    assert!(r.stderr.contains("--format markdown is not available in this natpath"), "{}", show(&r));
    // The text report is rendered once, for the log and the summary.
    assert_eq!(r.stdout.matches("stub report:").count(), 1, "{}", show(&r));
}
