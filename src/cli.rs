//! Command-line conventions shared by both binaries: the original's Go-style single-dash flags
//! (`-conf=FILE`, `-op=createpool`, `-detail`) are accepted next to ordinary `--flags`.

use std::ffi::OsString;

/// Rewrites Go-style `-name[=value]` arguments to `--name[=value]`. Single-letter short flags
/// (`-h`, `-V`), negative numbers and everything after `--` are left alone.
pub fn normalize_go_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut rest_verbatim = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || rest_verbatim {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            rest_verbatim = true;
            out.push(arg);
            continue;
        }
        let name = s.strip_prefix('-').filter(|r| !r.starts_with('-'));
        match name {
            Some(n)
                if n.split('=').next().is_some_and(|flag| {
                    flag.len() > 1 && flag.starts_with(|c: char| c.is_ascii_alphabetic())
                }) =>
            {
                out.push(OsString::from(format!("-{s}")));
            }
            _ => out.push(arg),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_go_flags(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn go_style_becomes_long() {
        assert_eq!(
            norm(&[
                "fbclient",
                "-op=leader",
                "-detail",
                "--json",
                "-h",
                "-5",
                "x"
            ]),
            [
                "fbclient",
                "--op=leader",
                "--detail",
                "--json",
                "-h",
                "-5",
                "x"
            ]
        );
        assert_eq!(
            norm(&["m", "-conf", "a.toml", "--", "-op=x"]),
            ["m", "--conf", "a.toml", "--", "-op=x"]
        );
    }
}
