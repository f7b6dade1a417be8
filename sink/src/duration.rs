//! Durations as people type them: humantime (`500ms`, `30s`, `3m`, `1h 30m`) or a bare number
//! of seconds (`10`, `2.5`), as the Python helper and curl users write `?wait=10`. One parser for
//! `?wait=` and every duration flag of the binary, so they all accept the same things.

use std::time::Duration;

/// How a duration is written, for help texts and error messages.
pub const DURATION_FORMS: &str = "30s, 500ms, 3m; a bare number is seconds";

/// A duration that is neither humantime nor a non-negative number of seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: use e.g. {DURATION_FORMS}")]
pub struct InvalidDuration {
    /// What was given.
    pub input: String,
}

/// Parses `s` (surrounding whitespace ignored) as a bare number of seconds or a humantime duration.
///
/// Usable as a clap `value_parser`.
pub fn parse_duration(s: &str) -> Result<Duration, InvalidDuration> {
    let trimmed = s.trim();
    let invalid = || InvalidDuration {
        input: s.to_owned(),
    };
    // Anything that reads as a number is taken as seconds, so `-1`, `NaN` and `inf` are refused
    // here rather than handed to humantime.
    match trimmed.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            Duration::try_from_secs_f64(secs).map_err(|_| invalid())
        }
        Ok(_) => Err(invalid()),
        Err(_) => humantime::parse_duration(trimmed).map_err(|_| invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_number_is_seconds_and_units_are_humantime() {
        for (given, want) in [
            ("10", Duration::from_secs(10)),
            ("2.5", Duration::from_millis(2500)),
            (" 0 ", Duration::ZERO),
            ("500ms", Duration::from_millis(500)),
            ("3m", Duration::from_secs(180)),
            ("1h 30m", Duration::from_secs(5400)),
        ] {
            assert_eq!(parse_duration(given), Ok(want), "{given:?}");
        }
    }

    #[test]
    fn negative_infinite_and_unitless_words_are_refused_with_the_forms() {
        for bad in ["-1", "NaN", "inf", "abc", "10 parsecs", "", "1e400"] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(
                err.to_string().contains("a bare number is seconds"),
                "{err}"
            );
        }
    }
}
