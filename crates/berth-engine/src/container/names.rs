//! Container names: validation and Docker-style generated names ("adjective_surname").

use rand::seq::SliceRandom;

const ADJECTIVES: &[&str] = &[
    "agile", "bold", "brave", "bright", "calm", "clever", "cool", "crisp", "daring", "eager",
    "fair", "fond", "gentle", "glad", "happy", "hardy", "keen", "kind", "lively", "lucid", "merry",
    "modest", "nimble", "noble", "patient", "placid", "proud", "quick", "quiet", "rapid", "serene",
    "sharp", "shy", "steady", "stoic", "sunny", "swift", "tender", "tidy", "upbeat", "vivid",
    "warm", "wise", "witty", "zealous",
];

// Names of people who shaped computing and science.
const SURNAMES: &[&str] = &[
    "babbage", "backus", "bohr", "boole", "cerf", "curie", "darwin", "dijkstra", "einstein",
    "euler", "faraday", "fermat", "feynman", "gauss", "goldberg", "hamilton", "hopper", "kahn",
    "knuth", "lamport", "liskov", "lovelace", "maxwell", "mccarthy", "meitner", "minsky", "newton",
    "noether", "pascal", "perlman", "ritchie", "shannon", "thompson", "torvalds", "turing", "wing",
    "wozniak", "yonath",
];

pub fn generate(taken: impl Fn(&str) -> bool) -> String {
    let mut rng = rand::thread_rng();
    for attempt in 0..64 {
        let a = ADJECTIVES.choose(&mut rng).copied().unwrap_or("brave");
        let s = SURNAMES.choose(&mut rng).copied().unwrap_or("turing");
        let name = if attempt < 8 {
            format!("{a}_{s}")
        } else {
            format!("{a}_{s}{}", attempt)
        };
        if !taken(&name) {
            return name;
        }
    }
    // Fall back to something that is unique by construction.
    format!("berth_{:016x}", rand::random::<u64>())
}

/// Docker's rule is `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (two characters at least), with an optional
/// leading slash. Berth also accepts a single character (`--name x`): no client depends on its
/// rejection, and issue 2's own acceptance list uses one.
pub fn validate(name: &str) -> Result<String, String> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    let mut chars = bare.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        }
        _ => false,
    };
    if ok {
        Ok(bare.to_string())
    } else {
        Err(format!(
            "Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_docker() {
        assert_eq!(validate("/web").unwrap(), "web");
        assert_eq!(validate("a.b-c_d").unwrap(), "a.b-c_d");
        assert!(validate("-x").is_err());
        assert_eq!(validate("x").unwrap(), "x");
        assert!(validate("a b").is_err());
        assert!(validate("").is_err());
    }

    #[test]
    fn generated_names_avoid_taken() {
        let n = generate(|_| false);
        assert!(validate(&n).is_ok());
        let taken = n.clone();
        for _ in 0..20 {
            assert_ne!(generate(|x| x == taken), taken);
        }
    }
}
