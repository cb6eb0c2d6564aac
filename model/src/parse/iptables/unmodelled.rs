//! What iptables-restore refuses in the modules natpath keeps without
//! modelling them (`Match::Unsupported`): a rule that uses one makes the
//! verdicts that depend on it unknown, but a rule iptables-restore would
//! refuse is bad input, as for any other module.
//!
//! Contract: [`check`] gives the reason a module's words would be refused,
//! for the modules it knows (u32, string, cgroup, time: the ones Kubernetes
//! clusters are seen to use), and accepts any words of the others. Each
//! rule here was measured against iptables-restore 1.8.9 (nf_tables) in a
//! network namespace on this project's kernel; where the real parser
//! accepts more than its documentation says (`--weekdays 8`, a date such as
//! 2026-02-30), this accepts it too: a refusal iptables does not make would
//! be worse than a missed one. The hooks `-m cgroup` may be used in are
//! checked with the other hook bounds (`hooks.rs`).

/// One option of a module: its name, whether `!` may precede it, and how
/// many words follow it.
struct Opt {
    name: &'static str,
    neg: bool,
    values: usize,
}

const fn opt(name: &'static str, neg: bool, values: usize) -> Opt {
    Opt { name, neg, values }
}

/// The options of the modules checked here.
fn options(module: &str) -> Option<&'static [Opt]> {
    const U32: &[Opt] = &[opt("--u32", true, 1)];
    const STRING: &[Opt] = &[
        opt("--from", false, 1),
        opt("--to", false, 1),
        opt("--algo", false, 1),
        opt("--string", true, 1),
        opt("--hex-string", true, 1),
        opt("--icase", false, 0),
    ];
    const CGROUP: &[Opt] = &[opt("--path", true, 1), opt("--cgroup", true, 1)];
    const TIME: &[Opt] = &[
        opt("--datestart", false, 1),
        opt("--datestop", false, 1),
        opt("--timestart", false, 1),
        opt("--timestop", false, 1),
        opt("--monthdays", true, 1),
        opt("--weekdays", true, 1),
        opt("--kerneltz", false, 0),
        opt("--localtz", false, 0),
        opt("--utc", false, 0),
        opt("--contiguous", false, 0),
    ];
    match module {
        "u32" => Some(U32),
        "string" => Some(STRING),
        "cgroup" => Some(CGROUP),
        "time" => Some(TIME),
        _ => None,
    }
}

/// Why iptables-restore would refuse `-m module` with `args` (the words
/// after it, `!` included), if it would.
pub(crate) fn check(module: &str, args: &[String]) -> Result<(), String> {
    let Some(known) = options(module) else { return Ok(()) };
    let mut given: Vec<(&'static str, Option<&str>)> = Vec::new();
    let mut i = 0;
    while let Some(w) = args.get(i) {
        let neg = w == "!";
        let name = if neg { args.get(i + 1).map_or("", String::as_str) } else { w.as_str() };
        i += usize::from(neg) + 1;
        let Some(o) = known.iter().find(|o| o.name == name) else {
            return Err(format!("`-m {module}` has no option `{name}` (iptables-restore: unknown option)"));
        };
        if neg && !o.neg {
            return Err(format!("`!` cannot be used before `{name}` of `-m {module}`"));
        }
        if given.iter().any(|(g, _)| *g == o.name) {
            return Err(format!("`{name}` of `-m {module}` can only be given once"));
        }
        let value = args.get(i).map(String::as_str);
        if o.values > 0 && value.is_none() {
            return Err(format!("expected a value after `{name}` of `-m {module}`, found end of options"));
        }
        i += o.values;
        given.push((o.name, if o.values > 0 { value } else { None }));
    }
    let get = |name: &str| given.iter().find(|(g, _)| *g == name).map(|(_, v)| v.unwrap_or(""));
    match module {
        "u32" => {
            let test =
                get("--u32").ok_or("`-m u32` needs `--u32` (iptables-restore: option \"--u32\" must be specified)")?;
            // Every test starts with a number (a location or a value).
            if !test.starts_with(|c: char| c.is_ascii_digit()) {
                return Err(format!("expected a u32 test starting with a number after `--u32`, found `{test}`"));
            }
        }
        "string" => {
            if get("--string").is_none() && get("--hex-string").is_none() {
                return Err("`-m string` needs `--string` or `--hex-string`".into());
            }
            let algo = get("--algo").ok_or("`-m string` needs `--algo` (`bm` or `kmp`)")?;
            if algo != "bm" && algo != "kmp" {
                return Err(format!(
                    "expected `bm` or `kmp` after `--algo`, found `{algo}` (the kernel has no such text search)"
                ));
            }
            let offset = |name: &str| get(name).map(|v| v.parse::<u32>().map_err(|_| v));
            match (offset("--from"), offset("--to")) {
                (Some(Err(v)), _) | (_, Some(Err(v))) => {
                    return Err(format!("expected an offset (0 to 4294967295) in `-m string`, found `{v}`"))
                }
                (Some(Ok(from)), Some(Ok(to))) if from > to => {
                    return Err(format!("`-m string --from {from}` is past `--to {to}` (the kernel refuses the rule)"))
                }
                _ => {}
            }
        }
        "cgroup" => match (get("--path"), get("--cgroup")) {
            (None, None) => {
                return Err("`-m cgroup` needs `--path` or `--cgroup` (the kernel refuses it without)".into())
            }
            (Some(_), Some(_)) => {
                return Err("`-m cgroup` takes `--path` or `--cgroup`, not both (the kernel refuses the rule)".into())
            }
            (None, Some(id)) if id.parse::<u32>().is_err() => {
                return Err(format!("expected a class id (0 to 4294967295) after `--cgroup`, found `{id}`"))
            }
            _ => {}
        },
        "time" => time(&get)?,
        _ => {}
    }
    Ok(())
}

/// `-m time`'s values, as libxt_time reads them.
fn time<'a>(get: &dyn Fn(&str) -> Option<&'a str>) -> Result<(), String> {
    for name in ["--timestart", "--timestop"] {
        if let Some(v) = get(name) {
            if !clock(v) {
                return Err(format!("expected a time hh:mm[:ss] (up to 23:59:59) after `{name}`, found `{v}`"));
            }
        }
    }
    for name in ["--datestart", "--datestop"] {
        if let Some(v) = get(name) {
            if !date(v) {
                return Err(format!(
                    "expected a date YYYY[-MM[-DD[Thh[:mm[:ss]]]]] from 1970 to 2038 after `{name}`, found `{v}`"
                ));
            }
        }
    }
    if let Some(v) = get("--monthdays") {
        if let Some(bad) = v.split(',').find(|d| d.parse::<u8>().map_or(true, |n| n > 31)) {
            return Err(format!("expected days of the month (0 to 31) after `--monthdays`, found `{bad}`"));
        }
    }
    if let Some(v) = get("--weekdays") {
        const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
        // A number, or the start of a day's name, two letters at least,
        // in that case: `Mo`, `Mon` and `Monday` are read, `mon` and `M`
        // are not.
        let day = |d: &str| d.parse::<u32>().is_ok() || (d.len() >= 2 && DAYS.iter().any(|name| name.starts_with(d)));
        if let Some(bad) = v.split(',').find(|d| !day(d)) {
            return Err(format!(
                "expected days of the week (`Mon`, `Tue`, ... or 1 to 7) after `--weekdays`, found `{bad}`"
            ));
        }
    }
    Ok(())
}

/// `hh:mm[:ss]`, each part one or two digits, within a day.
fn clock(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    let limits = [23u32, 59, 59];
    (2..=3).contains(&parts.len())
        && parts.iter().zip(limits).all(|(p, max)| {
            (1..=2).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| n <= max)
        })
}

/// `YYYY[-MM[-DD[Thh[:mm[:ss]]]]]` within what a 32-bit time holds.
fn date(v: &str) -> bool {
    let (day, clock_part) = match v.split_once('T') {
        Some((d, c)) => (d, Some(c)),
        None => (v, None),
    };
    let parts: Vec<&str> = day.split('-').collect();
    let num = |p: &str, len: usize| {
        (p.len() == len && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u32>().ok()).flatten()
    };
    let ok_day = match parts.as_slice() {
        [y] => num(y, 4).is_some_and(|y| (1970..=2038).contains(&y)),
        [y, m] => {
            num(y, 4).is_some_and(|y| (1970..=2038).contains(&y)) && num(m, 2).is_some_and(|m| (1..=12).contains(&m))
        }
        [y, m, d] => {
            num(y, 4).is_some_and(|y| (1970..=2038).contains(&y))
                && num(m, 2).is_some_and(|m| (1..=12).contains(&m))
                && num(d, 2).is_some_and(|d| (1..=31).contains(&d))
        }
        _ => false,
    };
    ok_day
        && clock_part.is_none_or(|c| {
            let ps: Vec<&str> = c.split(':').collect();
            (1..=3).contains(&ps.len())
                && ps.iter().zip([23u32, 59, 59]).all(|(p, max)| num(p, 2).is_some_and(|n| n <= max))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    /// Each line as iptables-restore 1.8.9 answered it (in a namespace).
    #[test]
    fn refuses_what_iptables_restore_refuses() {
        let cases: &[(&str, &str, bool)] = &[
            ("u32", "", false),
            ("u32", "--u32 0>>22&0x3C@12>>26&0x3F=0x10", true),
            ("u32", "--bogus 1", false),
            ("u32", "--u32 garbage", false),
            ("string", "--algo bm", false),
            ("string", "--string foo", false),
            ("string", "--string foo --algo bm", true),
            ("string", "--string foo --algo xyz", false),
            ("string", "--string foo --algo bm --from 5 --to 2", false),
            ("cgroup", "--path kubepods", true),
            ("cgroup", "--cgroup 1", true),
            ("cgroup", "", false),
            ("cgroup", "--path a --cgroup 1", false),
            ("time", "--timestart 25:00", false),
            ("time", "--timestart 23:00", true),
            ("time", "--timestart 9:5", true),
            ("time", "--timestart 09:05:00", true),
            ("time", "--timestart 24:00", false),
            ("time", "--timestart 23:00:61", false),
            ("time", "", true),
            ("time", "--weekdays Mo,Xy", false),
            ("time", "--weekdays Mon", true),
            ("time", "--weekdays mon", false),
            ("time", "--weekdays Monday", true),
            ("time", "--weekdays Mo", true),
            ("time", "--weekdays 1", true),
            ("time", "--weekdays 8", true),
            ("time", "--weekdays M", false),
            ("time", "--weekdays Mxx", false),
            ("time", "--monthdays 31", true),
            ("time", "--monthdays 32", false),
            ("time", "--monthdays 0", true),
            ("time", "--datestart 2026", true),
            ("time", "--datestart 2026-02-30", true),
            ("time", "--datestart 2026-01-01T10:00:00", true),
            ("time", "--datestart 2026-13-01", false),
            ("time", "--datestart 1969-01-01", false),
            ("time", "--datestart 2039-01-01", false),
            ("time", "--timestart 23:00 --timestart 22:00", false),
            ("quota", "--anything goes", true),
        ];
        for (module, args, accepted) in cases {
            let got = check(module, &words(args));
            assert_eq!(got.is_ok(), *accepted, "-m {module} {args}: {got:?}");
        }
    }
}
