//! Text for one-line messages: values echoed in errors, escaped and cut.

/// Echoed values longer than this are cut.
pub const SHOWN_MAX: usize = 64;

/// `text` with control characters escaped, cut at a character boundary so that it is at most
/// `max` bytes; true when cut.
pub fn escape_and_cut(text: &str, max: usize) -> (String, bool) {
    let mut out = String::with_capacity(text.len().min(max) + 8);
    for c in text.chars() {
        let before = out.len();
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(before);
            return (out, true);
        }
    }
    (out, false)
}

/// `text` fit for a one-line message: control characters escaped, cut after `max` bytes.
pub fn one_line(text: &str, max: usize) -> String {
    match escape_and_cut(text, max) {
        (out, true) => out + "…",
        (out, false) => out,
    }
}

/// A value echoed in an error, quoted: one line, cut after [`SHOWN_MAX`] bytes with its full
/// length noted, so a mistaken megabyte of text never becomes a megabyte of error.
pub fn shown(value: &str) -> String {
    match escape_and_cut(value, SHOWN_MAX) {
        (out, true) => format!("'{out}'…({} bytes)", value.len()),
        (out, false) => format!("'{out}'"),
    }
}

/// A number echoed in an error: as written when short, else in scientific notation (`1e308`
/// has 309 digits written out).
pub fn shown_number(value: f64) -> String {
    let plain = value.to_string();
    if plain.len() <= 24 {
        plain
    } else {
        format!("{value:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_quoted_as_they_are() {
        assert_eq!(shown("rbd"), "'rbd'");
        assert_eq!(shown(""), "''");
        assert_eq!(one_line("a b", 10), "a b");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(shown("a\nb\r\u{7}"), "'a\\nb\\r\\u{7}'");
        assert_eq!(one_line("x\ny", 10), "x\\ny");
    }

    #[test]
    fn long_values_are_cut_on_a_character_boundary_with_their_length() {
        let long = "é".repeat(1000);
        let s = shown(&long);
        assert!(s.ends_with("'…(2000 bytes)"), "{s}");
        assert!(s.len() < SHOWN_MAX + 24, "{s}");
        assert_eq!(
            one_line(&"x".repeat(100), 10),
            format!("{}…", "x".repeat(10))
        );
    }

    #[test]
    fn huge_numbers_are_written_short() {
        assert_eq!(shown_number(0.5), "0.5");
        assert_eq!(shown_number(1e308), "1e308");
        assert_eq!(shown_number(f64::NAN), "NaN");
        assert_eq!(shown_number(f64::NEG_INFINITY), "-inf");
    }
}
