//! Shared test helpers: loading the header fixtures in tests/fixtures/.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod encode;

use std::path::{Path, PathBuf};

/// One header line of a fixture: direction (`C` client→server, `S` server→client), name, value.
#[derive(Debug, Clone)]
pub struct Line {
    pub dir: char,
    pub name: String,
    pub value: String,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn load(name: &str) -> Vec<Line> {
    let text = std::fs::read_to_string(fixtures_dir().join(format!("{name}.txt"))).unwrap();
    parse(&text)
}

pub fn parse(text: &str) -> Vec<Line> {
    text.lines()
        .filter_map(|l| {
            let (dir, rest) = l.split_once(' ')?;
            let dir = match dir {
                "C" => 'C',
                "S" => 'S',
                _ => return None,
            };
            let (name, value) = rest.split_once(": ")?;
            Some(Line {
                dir,
                name: name.to_string(),
                value: value.to_string(),
            })
        })
        .collect()
}

pub const FIXTURES: &[&str] = &[
    "curl_ntlm",
    "curl_proxy_ntlm",
    "pyspnego_ntlm",
    "pyspnego_negotiate",
    "pyspnego_negotiate_raw_ntlm",
    "pyspnego_ntlm_unicode",
    "krb_negotiate_ap_req",
    "krb_raw_ap_req",
    "krb_error_bad_kvno",
    "krb_error_modified",
    "krb_fallback_ntlm",
];

/// Header lines that carry a token, as (fixture, line).
pub fn token_lines() -> Vec<(String, Line)> {
    FIXTURES
        .iter()
        .flat_map(|f| {
            load(f)
                .into_iter()
                .filter(|l| l.value.contains(' '))
                .map(|l| (f.to_string(), l))
        })
        .collect()
}

/// Decoded token bytes of every token in every fixture.
pub fn all_token_bytes() -> Vec<(String, Vec<u8>)> {
    token_lines()
        .into_iter()
        .map(|(f, l)| {
            let toks = tracker_ntlm::parse_auth_header(&l.name, &l.value).unwrap();
            assert_eq!(toks.len(), 1, "{f}: {}", l.value);
            let bytes = toks[0].token.as_ref().unwrap().expose_secret().to_vec();
            (format!("{f}: {}", &l.value[..l.value.len().min(40)]), bytes)
        })
        .collect()
}
