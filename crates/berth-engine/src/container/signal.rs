//! Signal names and numbers as Docker accepts them (`SIGTERM`, `TERM`, `term`, `15`, `RTMIN+3`).

use crate::error::{EngineError, Result};

/// Parses "SIGTERM", "TERM", "term" or "15".
pub fn parse_signal(s: &str) -> Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if n > 0 && n < 65 {
            return Ok(n);
        }
        return Err(EngineError::InvalidParameter(format!(
            "Invalid signal: {s}"
        )));
    }
    let up = t.to_ascii_uppercase();
    let name = up.strip_prefix("SIG").unwrap_or(&up);
    let n = match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" | "IOT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "STKFLT" => 16,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "TTIN" => 21,
        "TTOU" => 22,
        "URG" => 23,
        "XCPU" => 24,
        "XFSZ" => 25,
        "VTALRM" => 26,
        "PROF" => 27,
        "WINCH" => 28,
        "IO" | "POLL" => 29,
        "PWR" => 30,
        "SYS" => 31,
        _ => {
            if let Some(rest) = name.strip_prefix("RTMIN+") {
                if let Ok(k) = rest.parse::<i32>() {
                    if (0..=30).contains(&k) {
                        return Ok(34 + k);
                    }
                }
            }
            return Err(EngineError::InvalidParameter(format!(
                "Invalid signal: {s}"
            )));
        }
    };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("kill").unwrap(), 9);
        assert_eq!(parse_signal("10").unwrap(), 10);
        assert_eq!(parse_signal("SIGRTMIN+3").unwrap(), 37);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
