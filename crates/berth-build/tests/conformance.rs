//! BuildKit's parser and shell-word corpus (test data, Apache-2.0: `tests/corpus/`, a copy of
//! the steering repo's `shared/corpus/dockerfile/` so a clean checkout has it), run against our
//! parser: every dump compared exactly, every negative case rejected, every word case matched.
//! The corpus location can be overridden with BERTH_DOCKERFILE_CORPUS.

use berth_build::parser;
use berth_build::shell::Lexer;
use std::path::PathBuf;

fn corpus() -> PathBuf {
    let p = std::env::var_os("BERTH_DOCKERFILE_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus"));
    assert!(
        p.join("parser").is_dir(),
        "corpus not found at {}",
        p.display()
    );
    p
}

fn dirs(p: PathBuf) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn parser_dumps() {
    let cases = dirs(corpus().join("parser/testfiles"));
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for d in &cases {
        let src = std::fs::read_to_string(d.join("Dockerfile")).unwrap();
        let want = std::fs::read_to_string(d.join("result")).unwrap();
        match parser::parse(&src) {
            Ok(df) => {
                if df.dump() != want {
                    failures.push(format!(
                        "{}:\n--- want\n{want}--- got\n{}",
                        d.display(),
                        df.dump()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", d.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn negative_cases_rejected() {
    let cases = dirs(corpus().join("parser/testfiles-negative"));
    assert!(cases.len() >= 4);
    for d in &cases {
        let src = std::fs::read_to_string(d.join("Dockerfile")).unwrap();
        let r = parser::parse(&src).and_then(|df| {
            berth_build::instructions::parse_stages(&df).map_err(|e| parser::ParseError {
                message: e.to_string(),
                start_line: 0,
                end_line: 0,
            })
        });
        assert!(r.is_err(), "{} was accepted", d.display());
    }
}

#[test]
fn line_information() {
    let src = std::fs::read_to_string(corpus().join("parser/testfile-line/Dockerfile")).unwrap();
    let df = parser::parse(&src).unwrap();
    assert_eq!((df.start_line, df.end_line), (5, 31));
    let lines: Vec<(usize, usize)> = df
        .children
        .iter()
        .map(|c| (c.start_line, c.end_line))
        .collect();
    assert_eq!(lines, vec![(5, 5), (11, 12), (17, 31)]);
}

#[test]
fn env_var_test() {
    let src = std::fs::read_to_string(corpus().join("shell/envVarTest")).unwrap();
    let env: Vec<String> = ["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let lx = Lexer::new('\\');
    let mut n = 0;
    for (no, line) in src.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 3, "line {}", no + 1);
        let (platform, source, expected) = (parts[0].trim(), parts[1].trim(), parts[2].trim());
        if platform == "W" {
            continue;
        }
        n += 1;
        let got = lx.process_word(source, &env);
        if expected == "error" {
            assert!(got.is_err(), "line {}: {source:?} gave {got:?}", no + 1);
        } else {
            assert_eq!(got.as_deref(), Ok(expected), "line {}: {source:?}", no + 1);
        }
    }
    assert!(n > 200, "only {n} cases");
}

#[test]
fn words_test() {
    let src = std::fs::read_to_string(corpus().join("shell/wordsTest")).unwrap();
    let lx = Lexer::new('\\');
    let mut env: Vec<String> = Vec::new();
    let mut n = 0;
    for (no, line) in src.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            env.push(rest.trim_start_matches(' ').to_string());
            continue;
        }
        let parts: Vec<&str> = line.split('|').collect();
        assert_eq!(parts.len(), 2, "line {}", no + 1);
        let test = parts[0].trim();
        let expected: Vec<&str> = parts[1].trim_start_matches(' ').split(',').collect();
        let got = lx
            .process_words(test, &env)
            .unwrap_or_else(|_| vec!["error".into()]);
        assert_eq!(got, expected, "line {}: {test:?}", no + 1);
        n += 1;
    }
    assert!(n > 20);
}
