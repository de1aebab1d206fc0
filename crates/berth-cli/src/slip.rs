//! The tutorial's slip: `berth run hello_flask -rm`. As with Docker, every word after the image
//! belongs to the container's command; Berth keeps that, and warns when such a word looks like
//! one of `run`'s own options, because the user most likely meant it for `run`.

/// For each word of `args[1..]` (`args[0]` is the image) that is, with one or two leading dashes
/// and without an `=value`, one of `longs`, the word and the option it looks like (`--rm`).
/// Words after a literal `--` are the container's by the user's explicit choice: not reported.
/// Short options are not matched (`sh -c`, `ls -l` are ordinary commands).
pub fn misplaced_options(args: &[String], longs: &[String]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for w in args.iter().skip(1) {
        if w == "--" {
            break;
        }
        let Some(bare) = w
            .strip_prefix("--")
            .or_else(|| w.strip_prefix('-'))
            .filter(|b| !b.is_empty() && !b.starts_with('-'))
        else {
            continue;
        };
        let name = bare.split_once('=').map_or(bare, |(n, _)| n);
        if name != "help" && longs.iter().any(|l| l == name) {
            let opt = match bare.split_once('=') {
                Some((n, v)) => format!("--{n}={v}"),
                None => format!("--{name}"),
            };
            found.push((w.clone(), opt));
        }
    }
    found
}

/// The long options of `berth <sub>` (`run` or `create`), from the clap definition.
pub fn long_options(sub: &str) -> Vec<String> {
    let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
    cmd.find_subcommand(sub)
        .map(|c| {
            c.get_arguments()
                .filter_map(|a| a.get_long())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Prints the warning for each misplaced option of `berth <sub> IMAGE ...` on stderr.
pub fn warn_misplaced(sub: &str, args: &[String]) {
    let Some(image) = args.first() else { return };
    for (word, opt) in misplaced_options(args, &long_options(sub)) {
        eprintln!(
            "warning: \"{word}\" after the image name is passed to the container's command; \
             {sub} options go before the image name: berth {sub} {opt} {image}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn run_long_options_come_from_the_grammar() {
        let l = long_options("run");
        for o in ["rm", "detach", "name", "publish", "env", "interactive"] {
            assert!(l.iter().any(|x| x == o), "{o} missing from {l:?}");
        }
        assert!(!l.iter().any(|x| x == "c"));
    }

    #[test]
    fn slips_are_found_and_container_words_are_not() {
        let l = long_options("run");
        let f = misplaced_options(&words("hello_flask -rm"), &l);
        assert_eq!(f, vec![("-rm".into(), "--rm".into())]);
        let f = misplaced_options(&words("img --name=web --detach"), &l);
        assert_eq!(
            f,
            vec![
                ("--name=web".into(), "--name=web".into()),
                ("--detach".into(), "--detach".into())
            ]
        );
        // Ordinary commands with short options, values, and words after `--`.
        for ok in [
            "busybox sh -c true",
            "busybox ls -l /",
            "img -- --rm",
            "img python app.py",
            "img echo rm",
            "img --help",
            "img - --- -",
            "--rm",
        ] {
            assert!(misplaced_options(&words(ok), &l).is_empty(), "{ok}");
        }
    }
}
