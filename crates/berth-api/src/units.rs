//! Docker's `go-units` formatting, shared by the CLI and the engine (one home: they disagreed on
//! rounding when each had its own).

/// docker's `units.HumanDuration`: `ps` status strings, `ago` columns.
pub fn human_duration(secs: i64) -> String {
    let s = secs;
    if s < 1 {
        return "Less than a second".into();
    }
    if s == 1 {
        return "1 second".into();
    }
    if s < 60 {
        return format!("{s} seconds");
    }
    let minutes = s / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // Hours are rounded, not truncated.
    let hours = (s as f64 / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (s as f64 / 3600.0 / 24.0 / 365.0) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(42), "42 seconds");
        assert_eq!(human_duration(65), "About a minute");
        assert_eq!(human_duration(600), "10 minutes");
        assert_eq!(human_duration(3700), "About an hour");
        assert_eq!(human_duration(3 * 3600), "3 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(20 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(3 * 365 * 86400), "3 years");
    }
}
