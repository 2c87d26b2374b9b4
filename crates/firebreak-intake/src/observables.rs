//! Observables in free text and in single structured values.
//!
//! [`extract`] finds IPs, domains, URLs, email addresses, hashes, CVE ids and file names in
//! free text (an email body, a syslog message). Defanged forms (`hxxps://`, `evil[.]com`,
//! `user[@]example[.]com`...) are recognized and every value comes back refanged and in
//! canonical form, so equal things compare equal. [`classify`] validates and canonicalizes one
//! value an adapter took from a structured field.
//!
//! Everything here is regex-and-table work on one pass per kind over the text, with the regexes
//! compiled once; no pattern backtracks (the `regex` crate guarantees linear time).

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;

use crate::{Observable, ObservableKind};

/// Public suffixes accepted as the last label of a domain found in free text. Curated: the
/// generic TLDs seen in practice (including the cheap ones phishing favours) and the
/// country codes in common use. Country codes that mostly show up as file extensions
/// (`.md`, `.rs`, `.so`, `.ps`, `.pm`, `.sh`, `.py`) are left out: `README.md` is not a domain.
/// A URL or email host needs no TLD from this list.
#[rustfmt::skip]
const TLDS: &[&str] = &[
    // generic
    "academy", "agency", "app", "art", "asia", "autos", "bank", "bar", "beauty", "best", "bid",
    "bio", "biz", "blog", "bond", "buzz", "cam", "capital", "cash", "cat", "center", "cfd", "chat",
    "click", "cloud", "club", "codes", "com", "company", "computer", "consulting", "coop", "credit",
    "cyou", "date", "dating", "design", "dev", "digital", "direct", "domains", "download", "edu",
    "email", "energy", "exchange", "expert", "express", "faith", "finance", "fit", "fun", "gallery",
    "games", "global", "gold", "gov", "group", "guru", "health", "homes", "host", "icu", "inc",
    "info", "ink", "int", "jobs", "lat", "life", "link", "live", "llc", "loan", "loans", "lol",
    "ltd", "market", "marketing", "media", "men", "mil", "mobi", "mom", "money", "monster", "mov",
    "museum", "name", "net", "network", "news", "ninja", "one", "online", "ooo", "org", "page",
    "party", "photo", "photos", "pics", "pink", "plus", "post", "press", "pro", "promo", "pub",
    "quest", "racing", "red", "rest", "review", "rocks", "run", "sale", "sbs", "school", "science",
    "services", "shop", "shopping", "site", "social", "software", "solutions", "space", "store",
    "stream", "studio", "support", "surf", "systems", "team", "tech", "technology", "tel", "today",
    "tools", "top", "trade", "trading", "travel", "tube", "uno", "vip", "vision", "webcam",
    "website", "wiki", "win", "work", "works", "world", "wtf", "xxx", "xyz", "zip", "zone",
    // country codes
    "ac", "ad", "ae", "af", "ag", "ai", "al", "am", "ao", "ar", "as", "at", "au", "az", "ba", "bd",
    "be", "bf", "bg", "bh", "bi", "bj", "bn", "bo", "br", "bs", "bt", "bw", "by", "bz", "ca", "cc",
    "cd", "cf", "cg", "ch", "ci", "cl", "cm", "cn", "co", "cr", "cu", "cv", "cx", "cy", "cz", "de",
    "dj", "dk", "dm", "do", "dz", "ec", "ee", "eg", "es", "et", "eu", "fi", "fj", "fm", "fo", "fr",
    "ga", "ge", "gg", "gh", "gi", "gl", "gm", "gn", "gp", "gq", "gr", "gs", "gt", "gy", "hk", "hn",
    "hr", "ht", "hu", "id", "ie", "il", "im", "in", "io", "iq", "ir", "is", "it", "je", "jm", "jo",
    "jp", "ke", "kg", "kh", "ki", "km", "kn", "kp", "kr", "kw", "ky", "kz", "la", "lb", "lc", "li",
    "lk", "lr", "ls", "lt", "lu", "lv", "ly", "ma", "mc", "me", "mg", "mk", "ml", "mm", "mn", "mo",
    "mp", "mq", "mr", "mt", "mu", "mv", "mw", "mx", "my", "mz", "na", "nc", "ne", "nf", "ng", "ni",
    "nl", "no", "np", "nr", "nu", "nz", "om", "pa", "pe", "pf", "pg", "ph", "pk", "pl", "pn", "pr",
    "pt", "pw", "qa", "re", "ro", "ru", "rw", "sa", "sb", "sc", "sd", "se", "sg", "si", "sk", "sl",
    "sm", "sn", "sr", "st", "su", "sv", "sx", "sy", "sz", "tc", "td", "tf", "tg", "th", "tj", "tk",
    "tl", "tm", "tn", "to", "tr", "tt", "tv", "tw", "tz", "ua", "ug", "uk", "us", "uy", "uz", "va",
    "vc", "ve", "vg", "vi", "vn", "vu", "ws", "ye", "yt", "za", "zm", "zw",
];

/// Extensions that make a dotted word a file name rather than a domain, even where the
/// extension is also a TLD (`.zip`, `.mov`): outside a URL, `invoice.zip` is a file.
#[rustfmt::skip]
const FILE_EXTENSIONS: &[&str] = &[
    "7z", "apk", "asp", "aspx", "bat", "cmd", "cpl", "csv", "dll", "dmg", "doc", "docm", "docx",
    "eml", "exe", "gz", "hta", "htm", "html", "img", "iso", "jar", "js", "jse", "jsp", "lnk", "mov",
    "msg", "msi", "pdf", "php", "ppt", "pptm", "pptx", "ps1", "py", "rar", "rtf", "scr", "sh",
    "sys", "tgz", "txt", "vbe", "vbs", "wsf", "xls", "xlsm", "xlsx", "zip",
];

/// The lists as sorted keys: labels of up to 8 bytes packed into a `u64` (fast to compare),
/// longer ones as strings.
struct LabelSet {
    packed: Vec<u64>,
    long: Vec<&'static str>,
}

impl LabelSet {
    fn new(list: &[&'static str]) -> Self {
        let mut packed: Vec<u64> = list.iter().filter_map(|l| pack(l.as_bytes())).collect();
        let mut long: Vec<&'static str> = list.iter().copied().filter(|l| l.len() > 8).collect();
        packed.sort_unstable();
        long.sort_unstable();
        Self { packed, long }
    }
    /// Whether the set holds `label` (compared ASCII-case-insensitively).
    fn contains(&self, label: &str) -> bool {
        match pack(label.as_bytes()) {
            Some(p) => self.packed.binary_search(&p).is_ok(),
            None if label.len() > 8 => {
                let lower = label.to_ascii_lowercase();
                self.long.binary_search(&lower.as_str()).is_ok()
            }
            None => false,
        }
    }
}

/// A label of 1-8 bytes, lowercased, packed into a `u64`.
fn pack(label: &[u8]) -> Option<u64> {
    if label.is_empty() || label.len() > 8 {
        return None;
    }
    Some(
        label
            .iter()
            .fold(0u64, |v, c| (v << 8) | u64::from(c.to_ascii_lowercase())),
    )
}

static TLD_SET: LazyLock<LabelSet> = LazyLock::new(|| LabelSet::new(TLDS));
static EXT_SET: LazyLock<LabelSet> = LazyLock::new(|| LabelSet::new(FILE_EXTENSIONS));

fn compile(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

/// Defanging, in one alternation: a defanged scheme (`hxxps://`, `fxp[:]//`), a bracketed
/// separator (`[://]`, `[:]`), a bracketed dot or at sign (`[.]`, `(dot)`, `[@]`, ` (at) `).
static DEFANG_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    compile(
        r"(?i)(?-u:\b)(?:hxxps?|fxps?)(?:\[://\]|\[:\]//|://)|\[://\]|\[:\]|\[\.\]|\(\.\)|\{\.\}|[ ]?[\[({]dot[\])}][ ]?|\[@\]|\(@\)|\{@\}|[ ]?[\[({]at[\])}][ ]?",
    )
});
/// A URL ends at whitespace, a control character (never part of a URL, RFC 3986) or a
/// character that delimits URLs in text.
static URL_RE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    compile(
        r#"(?i)(?-u:\b)(?:https?|ftps?)://(?:\[[0-9a-f:.]+\]|[^\s\p{Cc}/?#<>"'`{}|\\^\[\]]+)[^\s\p{Cc}<>"'`{}|\\^]*"#,
    )
});
static EMAIL_RE: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"));
static DOTTED_RE: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_][A-Za-z0-9_\-]*)+"));
static HASH_RE: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"(?-u:\b)[0-9A-Fa-f]{32,64}(?-u:\b)"));
static CVE_RE: LazyLock<Option<Regex>> =
    LazyLock::new(|| compile(r"(?i)(?-u:\b)CVE-\d{4}-\d{4,}(?-u:\b)"));

/// Whether every regex of this module compiled (they are constants; a test asserts this).
pub fn regexes_ok() -> bool {
    [
        &DEFANG_RE, &URL_RE, &EMAIL_RE, &DOTTED_RE, &HASH_RE, &CVE_RE,
    ]
    .iter()
    .all(|r| r.is_some())
}

/// Whether `tld` (no dot; any case) is in the curated TLD list.
pub fn is_known_tld(tld: &str) -> bool {
    TLD_SET.contains(tld)
}

/// Whether `ext` (no dot; any case) is one of the file extensions that make a name a file.
pub fn is_file_extension(ext: &str) -> bool {
    EXT_SET.contains(ext)
}

/// Undo the usual defanging: `hxxp://` → `http://`, `fxp://` → `ftp://`, `[.]` `(.)` `{.}`
/// `[dot]` `(dot)` → `.`, `[@]` `[at]` `(at)` → `@`, `[:]` → `:`, `[://]` → `://`.
pub fn refang(s: &str) -> String {
    refang_cow(s).into_owned()
}

fn refang_cow(s: &str) -> Cow<'_, str> {
    let mut out = refang_once(s);
    // A defang around a defang ("([.])") is whole only after another pass: repeated to a fixed
    // point, so that refanging is idempotent (feeds and `classify` refang what `extract`
    // returned). Every pass that changes something shortens the text or turns an `hxxp` into
    // `http`, so this ends; the bound is a guard.
    for _ in 0..64 {
        let Cow::Owned(current) = &out else {
            break;
        };
        match refang_once(current) {
            Cow::Owned(next) if next != *current => out = Cow::Owned(next),
            _ => break,
        }
    }
    out
}

fn refang_once(s: &str) -> Cow<'_, str> {
    let maybe = s.bytes().any(|b| matches!(b, b'[' | b'(' | b'{'))
        || s.bytes().any(|b| b == b'x' || b == b'X')
            && (contains_ignore_ascii_case(s, "hxxp") || contains_ignore_ascii_case(s, "fxp"));
    if !maybe {
        return Cow::Borrowed(s);
    }
    let Some(re) = DEFANG_RE.as_ref() else {
        return Cow::Borrowed(s);
    };
    re.replace_all(s, |caps: &regex::Captures<'_>| {
        let m = caps.get(0).map_or("", |m| m.as_str());
        let lower = m.trim().to_ascii_lowercase();
        if lower.starts_with("hxxps") {
            "https://"
        } else if lower.starts_with("hxxp") {
            "http://"
        } else if lower.starts_with("fxps") {
            "ftps://"
        } else if lower.starts_with("fxp") {
            "ftp://"
        } else if lower == "[://]" {
            "://"
        } else if lower == "[:]" {
            ":"
        } else if lower.contains("dot") || lower.contains('.') {
            "."
        } else {
            "@"
        }
    })
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    let Some(&first) = n.first() else {
        return true;
    };
    h.iter().enumerate().any(|(i, c)| {
        c.eq_ignore_ascii_case(&first)
            && h.get(i..i + n.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(n))
    })
}

/// Texts kept by [`extract_repeated`] per thread, at most (then it starts again).
const REPEATED_CACHE: usize = 4096;
/// Longest text [`extract_repeated`] keeps.
const REPEATED_MAX_LEN: usize = 512;
/// Most observables in an answer [`extract_repeated`] keeps (a title is a signature's name;
/// one crowded with indicators is not one that comes again).
const REPEATED_MAX_FOUND: usize = 8;

std::thread_local! {
    static REPEATED: std::cell::RefCell<std::collections::HashMap<Box<str>, Vec<Observable>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// [`extract`] for texts that come again and again (a sensor's alert titles: a few thousand
/// signatures over millions of alerts): the answer is kept per thread for the last few
/// thousand distinct short texts with few observables (a few MB a thread at most). The same
/// answer as [`extract`], always.
pub fn extract_repeated(text: &str) -> Vec<Observable> {
    if text.len() > REPEATED_MAX_LEN {
        return extract(text);
    }
    if let Some(hit) = REPEATED.with(|c| c.borrow().get(text).cloned()) {
        return hit;
    }
    let found = extract(text);
    if found.len() > REPEATED_MAX_FOUND {
        return found;
    }
    REPEATED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= REPEATED_CACHE {
            c.clear();
        }
        c.insert(text.into(), found.clone());
    });
    found
}

/// Find the observables in free text, refanged and canonical, deduplicated, in order of first
/// appearance. The host of a URL or an email address is also returned (as `domain`, or `ip`).
pub fn extract(text: &str) -> Vec<Observable> {
    let text = refang_cow(text);
    let text: &str = &text;
    let mut found: Vec<(usize, Observable)> = Vec::new();
    encoded_urls(text, &mut found);
    // Text with the URLs and email addresses blanked out (same byte offsets), so their hosts
    // and paths are not found a second time as bare domains, IPs or file names.
    let mut masked = String::new();

    if text.contains("://")
        && let Some(re) = URL_RE.as_ref()
    {
        for m in re.find_iter(text) {
            let raw = trim_url_end(m.as_str());
            if let Some((url, host)) = canonical_url(raw) {
                found.push((m.start(), Observable::new(ObservableKind::Url, url)));
                if let Some(h) = host {
                    found.push((m.start(), h));
                }
                blank(&mut masked, text, m.start(), m.start() + raw.len());
            }
        }
    }
    if masked.is_empty() {
        masked.push_str(text);
    }

    if masked.contains('@')
        && let Some(re) = EMAIL_RE.as_ref()
    {
        let spans: Vec<(usize, usize)> = re
            .find_iter(&masked)
            .filter_map(|m| {
                let email = canonical_email(m.as_str(), true)?;
                let domain = email
                    .rsplit_once('@')
                    .map(|(_, d)| Observable::new(ObservableKind::Domain, d));
                found.push((m.start(), Observable::new(ObservableKind::Email, email)));
                if let Some(d) = domain {
                    found.push((m.start(), d));
                }
                Some((m.start(), m.end()))
            })
            .collect();
        for (start, end) in spans {
            let spaces = " ".repeat(end - start);
            if masked.is_char_boundary(start) && masked.is_char_boundary(end) {
                masked.replace_range(start..end, &spaces);
            }
        }
    }
    let mt = masked.as_str();

    scan_ipv4(mt, &mut found);
    if mt.bytes().filter(|&c| c == b':').nth(1).is_some() {
        scan_ipv6(mt, &mut found);
    }
    // Dotted words: a file name when the last label is a known extension, else a domain when
    // it is a known TLD.
    if mt.contains('.')
        && let Some(re) = DOTTED_RE.as_ref()
    {
        for m in re.find_iter(mt) {
            if followed_by_word(mt, m.end()) {
                continue;
            }
            let mut word = m.as_str();
            // after a percent-escape (`%2Fwww.example.org`): the escape's two hex digits are
            // not part of the word
            if m.start() > 0
                && mt.as_bytes()[m.start() - 1] == b'%'
                && word.len() > 2
                && word.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit)
            {
                word = &word[2..];
                if !word.starts_with(|c: char| c.is_ascii_alphanumeric()) || !word.contains('.') {
                    continue;
                }
            }
            match last_label_class(word) {
                LabelClass::FileExtension => {
                    found.push((m.start(), Observable::new(ObservableKind::Filename, word)));
                }
                LabelClass::Tld => {
                    if let Some(d) = domain_with_known_tld(word) {
                        found.push((m.start(), Observable::new(ObservableKind::Domain, d)));
                    }
                }
                LabelClass::Other => {}
            }
        }
    }
    // Hashes and CVE ids: over the whole text, URLs included (a sandbox or VirusTotal link
    // carries the hash).
    if has_hex_run(text, 32)
        && let Some(re) = HASH_RE.as_ref()
    {
        for m in re.find_iter(text) {
            if let Some(o) = hash_by_length(m.as_str()) {
                found.push((m.start(), o));
            }
        }
    }
    if let Some(re) = CVE_RE.as_ref() {
        for m in re.find_iter(text) {
            found.push((
                m.start(),
                Observable::new(ObservableKind::Cve, m.as_str().to_ascii_uppercase()),
            ));
        }
    }

    found.sort_by_key(|(pos, _)| *pos);
    dedup(found.into_iter().map(|(_, o)| o))
}

/// URLs given percent-encoded inside other text (`redirect_to=http%3A%2F%2Fevil.example%2F`,
/// a phishing link's `url=` parameter), decoded once and read as text of their own: the URL
/// the victim is sent to, and its host. Their `%XX` escapes hide them from the other scans.
fn encoded_urls(text: &str, found: &mut Vec<(usize, Observable)>) {
    const MARK: &[u8] = b"%3a%2f%2f";
    // the same escaped once more (`%253A%252F%252F`): decoded twice
    const TWICE: &[u8] = b"%253a%252f%252f";
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = text[from..].find('%') {
        let at = from + i;
        let marked = |m: &[u8]| {
            bytes
                .get(at..at + m.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(m))
        };
        if !marked(MARK) && !marked(TWICE) {
            from = at + 1;
            continue;
        }
        // the scheme before the escaped "://", and the value up to a separator after it
        let start = text[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |p| p + 1);
        let end = text[at..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '&' | '"' | '\'' | '<' | '>' | '|' | ';' | ',')
            })
            .map_or(text.len(), |p| at + p);
        from = end.max(at + MARK.len());
        if start == at {
            continue;
        }
        let decoded = percent_decode(&text[start..end]);
        // a decoding always shortens the text, so this ends (twice-encoded URLs included)
        for o in extract(&decoded) {
            found.push((start, o));
        }
    }
}

/// `s` with its `%XX` escapes decoded (bytes that are not UTF-8 become U+FFFD).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Deduplicate, keeping the first of each (kind, value) in order.
pub fn dedup(items: impl IntoIterator<Item = Observable>) -> Vec<Observable> {
    let mut out: Vec<Observable> = Vec::new();
    let mut seen: Option<HashSet<(ObservableKind, String)>> = None;
    for o in items {
        // Few observables per record: a linear scan beats hashing until the list grows.
        let new = match seen.as_mut() {
            Some(set) => set.insert((o.kind, o.value.clone())),
            None => {
                let new = !out.contains(&o);
                if new && out.len() >= 32 {
                    let mut set: HashSet<(ObservableKind, String)> =
                        out.iter().map(|x| (x.kind, x.value.clone())).collect();
                    set.insert((o.kind, o.value.clone()));
                    seen = Some(set);
                }
                new
            }
        };
        if new {
            out.push(o);
        }
    }
    out
}

/// Copy `text` into `masked` (the first time) with `start..end` replaced by spaces.
fn blank(masked: &mut String, text: &str, start: usize, end: usize) {
    if masked.is_empty() {
        masked.push_str(text);
    }
    if start < end && masked.is_char_boundary(start) && masked.is_char_boundary(end) {
        masked.replace_range(start..end, &" ".repeat(end - start));
    }
}

/// Whether the match ending at `end` continues as a longer dotted word (`file.js.map`).
fn followed_by_word(text: &str, end: usize) -> bool {
    let b = text.as_bytes();
    match b.get(end) {
        Some(b'.') => b.get(end + 1).is_some_and(|c| c.is_ascii_alphanumeric()),
        Some(c) => c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-',
        None => false,
    }
}

fn has_hex_run(text: &str, min: usize) -> bool {
    let mut run = 0usize;
    for b in text.bytes() {
        if b.is_ascii_hexdigit() {
            run += 1;
            if run >= min {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

/// IPv4 addresses: runs of digits and dots with four parts of 1-3 digits, not glued to a word
/// and not part of a longer dotted number (a version, an OID), validated by the standard
/// library's parser (so `999.1.1.1` is not one).
fn scan_ipv4(text: &str, out: &mut Vec<(usize, Observable)>) {
    let b = text.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    let mut i = 0;
    while i < b.len() {
        if !b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
            continue;
        }
        let start = i;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'.') {
            i += 1;
        }
        let glued_before = start > 0 && b.get(start - 1).is_some_and(|c| word(c) || *c == b'.');
        if glued_before || b.get(i).is_some_and(word) {
            continue;
        }
        let Some(run) = text.get(start..i) else {
            continue;
        };
        let run = run.strip_suffix('.').unwrap_or(run);
        let parts = run.split('.');
        if parts.clone().count() != 4 || parts.clone().any(|p| p.is_empty() || p.len() > 3) {
            continue;
        }
        // the unspecified address says "no address", as `classify` reads it
        if let Ok(ip) = run.parse::<Ipv4Addr>()
            && !ip.is_unspecified()
        {
            out.push((start, Observable::new(ObservableKind::Ip, ip.to_string())));
        }
    }
}

/// IPv6 addresses: runs of hex digits, colons and dots with at least two colons, validated by
/// the standard library's parser. A run glued to a preceding word (`inside:fe80::1`) loses its
/// first group; a run glued to a following word is not an address.
fn scan_ipv6(text: &str, out: &mut Vec<(usize, Observable)>) {
    let b = text.as_bytes();
    let in_run = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
    let mut i = 0;
    // Only the runs that hold a colon matter: jump from colon to colon.
    while let Some(colon) = b.get(i..).and_then(|r| r.iter().position(|&c| c == b':')) {
        let colon = i + colon;
        let mut start = colon;
        while start > 0 && b.get(start - 1).is_some_and(|&c| in_run(c)) {
            start -= 1;
        }
        let mut end = colon;
        while b.get(end).is_some_and(|&c| in_run(c)) {
            end += 1;
        }
        i = end.max(colon + 1);
        if b.get(end)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
        {
            continue;
        }
        let Some(run) = text.get(start..end) else {
            continue;
        };
        if run.bytes().filter(|&c| c == b':').count() < 2 {
            continue;
        }
        let mut offset = 0;
        let glued = start > 0
            && b.get(start - 1)
                .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_');
        if glued {
            let Some(p) = run.find(':') else { continue };
            offset = if run.get(p + 1..p + 2) == Some(":") {
                p
            } else {
                p + 1
            };
        }
        let Some(mut cand) = run.get(offset..) else {
            continue;
        };
        cand = cand.trim_end_matches('.');
        if cand.ends_with(':') && !cand.ends_with("::") {
            cand = cand.get(..cand.len() - 1).unwrap_or("");
        }
        if cand.starts_with(':') && !cand.starts_with("::") {
            cand = cand.get(1..).unwrap_or("");
        }
        if cand == "::" || !cand.contains(':') {
            continue;
        }
        if let Ok(ip) = cand.parse::<Ipv6Addr>()
            && !ip.is_unspecified()
        {
            out.push((
                start + offset,
                Observable::new(ObservableKind::Ip, ip.to_string()),
            ));
        }
    }
}

/// Strip punctuation that ends a sentence rather than the URL; a `)` stays when it closes a
/// `(` inside the URL, a `]` when it closes a `[` (an IPv6 host: `http://[2001:db8::1]`).
fn trim_url_end(url: &str) -> &str {
    let mut s = url;
    loop {
        let Some(last) = s.chars().last() else {
            return s;
        };
        let strip = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '>' | '\'' | '"' => true,
            ')' => s.matches('(').count() < s.matches(')').count(),
            ']' => s.matches('[').count() < s.matches(']').count(),
            _ => false,
        };
        if !strip {
            return s;
        }
        s = s.get(..s.len() - last.len_utf8()).unwrap_or("");
    }
}

/// A URL in canonical form (scheme and host lowercased) and the observable for its host.
fn canonical_url(raw: &str) -> Option<(String, Option<Observable>)> {
    let (scheme, rest) = raw.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "ftp" | "ftps") {
        return None;
    }
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..auth_end)?;
    let tail = rest.get(auth_end..)?;
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (host, port) = if let Some(after) = hostport.strip_prefix('[') {
        // brackets hold an IPv6 address, and only a port may follow them (RFC 3986)
        let (h, p) = after.split_once(']')?;
        let port_ok = p.is_empty()
            || p.strip_prefix(':')
                .is_some_and(|d| d.bytes().all(|c| c.is_ascii_digit()));
        if !port_ok || h.parse::<Ipv6Addr>().is_err() {
            return None;
        }
        (h, p)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|c| c.is_ascii_digit()) => {
                (h, hostport.get(h.len()..).unwrap_or(""))
            }
            _ => (hostport, ""),
        }
    };
    let host = host.trim_end_matches('.').to_lowercase();
    if host.is_empty() {
        return None;
    }
    let host_obs = if let Ok(ip) = host.parse::<IpAddr>() {
        (!ip.is_unspecified()).then(|| Observable::new(ObservableKind::Ip, ip.to_string()))
    } else if valid_domain_labels(&host) && host.contains('.') {
        Some(Observable::new(ObservableKind::Domain, host.clone()))
    } else if host
        .chars()
        .all(|c| c.is_alphanumeric() || c == '-' || c == '.' || c == '_')
    {
        None
    } else {
        return None;
    };
    let host_out = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let mut url = format!("{scheme}://");
    if let Some(u) = userinfo {
        url.push_str(u);
        url.push('@');
    }
    url.push_str(&host_out);
    url.push_str(port);
    url.push_str(tail);
    Some((url, host_obs))
}

/// Labels of a (lowercased) domain: 1-63 chars of letters, digits, `-` and `_`, not starting
/// or ending with `-`; at most 253 chars; the last label alphabetic (or an IDN `xn--` label).
fn valid_domain_labels(d: &str) -> bool {
    if d.is_empty() || d.len() > 253 {
        return false;
    }
    let mut labels = d.split('.').peekable();
    while let Some(l) = labels.next() {
        if l.is_empty()
            || l.len() > 63
            || l.starts_with('-')
            || l.ends_with('-')
            || !l
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        {
            return false;
        }
        if labels.peek().is_none() {
            let tld_ok = l.starts_with("xn--") || l.chars().all(|c| c.is_alphabetic());
            if !tld_ok || l.len() < 2 {
                return false;
            }
        }
    }
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelClass {
    FileExtension,
    Tld,
    Other,
}

/// What the last label of a dotted word is (file extensions win over TLDs), without allocating.
fn last_label_class(word: &str) -> LabelClass {
    let last = word.rsplit('.').next().unwrap_or("");
    if is_file_extension(last) {
        LabelClass::FileExtension
    } else if is_known_tld(last) {
        LabelClass::Tld
    } else {
        LabelClass::Other
    }
}

/// A dotted word from free text as a domain: valid labels and a TLD from the list that is not
/// a file extension; `_` only at the start of a label (`_dmarc.example.com`, not
/// `Ransom_CERBER.SM`).
fn free_text_domain(s: &str) -> Option<String> {
    if last_label_class(s) != LabelClass::Tld {
        return None;
    }
    domain_with_known_tld(s)
}

fn domain_with_known_tld(s: &str) -> Option<String> {
    if s.split('.')
        .any(|l| l.get(1..).is_some_and(|rest| rest.contains('_')))
    {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    valid_domain_labels(&lower).then_some(lower)
}

/// An email address, lowercased; with `known_tld`, its domain must end in a listed TLD.
fn canonical_email(s: &str, known_tld: bool) -> Option<String> {
    let s = s.trim().trim_matches(|c| c == '<' || c == '>');
    let (local, domain) = s.rsplit_once('@')?;
    let local = local.trim_matches('.');
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if local.is_empty()
        || local.len() > 64
        || !local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._%+-!#$&'*/=?^`{|}~".contains(c))
        || !domain.contains('.')
        || !valid_domain_labels(&domain)
    {
        return None;
    }
    if known_tld {
        let tld = domain.rsplit('.').next()?;
        if !is_known_tld(tld) {
            return None;
        }
    }
    Some(format!("{}@{domain}", local.to_ascii_lowercase()))
}

/// A hex string of 32, 40 or 64 digits as the matching hash kind, lowercased.
pub fn hash_by_length(s: &str) -> Option<Observable> {
    let s = s.trim();
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let kind = match s.len() {
        32 => ObservableKind::Md5,
        40 => ObservableKind::Sha1,
        64 => ObservableKind::Sha256,
        _ => return None,
    };
    Some(Observable::new(kind, s.to_ascii_lowercase()))
}

/// An IP address in canonical form (IPv6 compressed per RFC 5952); brackets and an IPv6 zone
/// are accepted and dropped.
pub fn canonical_ip(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    let s = s.split_once('%').map_or(s, |(a, _)| a);
    s.parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

/// Values that sources put in a field to say "nothing".
fn is_null_value(s: &str) -> bool {
    matches!(
        s.to_ascii_lowercase().as_str(),
        "" | "-"
            | "--"
            | "n/a"
            | "na"
            | "none"
            | "null"
            | "(null)"
            | "nil"
            | "unknown"
            | "(no user)"
            | "0.0.0.0"
            | "::"
    )
}

/// Validate and canonicalize one value taken from a structured field. With a hint, the value
/// must be of that kind (an IP is accepted for a `hostname` or `domain` hint and returned as
/// `ip`; a hash hint accepts any of the three hash lengths; a `url` without a scheme falls back
/// to domain/IP). Without a hint the kind is guessed. Null-ish values (`-`, `N/A`...) and the
/// unspecified addresses give `None`.
pub fn classify(kind_hint: Option<ObservableKind>, value: &str) -> Option<Observable> {
    let refanged = refang(value.trim());
    let v = refanged.trim().trim_matches('"').trim();
    if is_null_value(v) || v.chars().any(char::is_control) {
        return None;
    }
    let ip = || canonical_ip(v).map(|ip| Observable::new(ObservableKind::Ip, ip));
    match kind_hint {
        None => ip()
            .or_else(|| classify_url(v))
            .or_else(|| {
                canonical_email(v, false).map(|e| Observable::new(ObservableKind::Email, e))
            })
            .or_else(|| hash_by_length(v))
            .or_else(|| canonical_cve(v))
            .or_else(|| {
                let lower = v.to_ascii_lowercase();
                let ext = lower.rsplit_once('.').map(|(_, e)| e)?;
                (is_file_extension(ext) && !v.contains(char::is_whitespace))
                    .then(|| Observable::new(ObservableKind::Filename, v))
            })
            .or_else(|| free_text_domain(v).map(|d| Observable::new(ObservableKind::Domain, d))),
        Some(ObservableKind::Ip) => ip(),
        Some(ObservableKind::Domain) => ip().or_else(|| classify_domain(v)),
        Some(ObservableKind::Hostname) => ip().or_else(|| {
            let lower = v.to_lowercase();
            let ok = lower
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '$'));
            ok.then(|| Observable::new(ObservableKind::Hostname, lower))
        }),
        // a value given as a URL is the whole URL: prose punctuation is trimmed only from
        // URLs found in text (`?id=5;` and `...&x=<b>` are distinct indicators)
        Some(ObservableKind::Url) => (v.contains("://"))
            .then(|| canonical_url(v).map(|(u, _)| Observable::new(ObservableKind::Url, u)))
            .flatten()
            .or_else(|| classify_url(v))
            .or_else(ip)
            .or_else(|| classify_domain(v.split(['/', '?', '#']).next().unwrap_or(v))),
        Some(ObservableKind::Email) => {
            canonical_email(v, false).map(|e| Observable::new(ObservableKind::Email, e))
        }
        Some(ObservableKind::Md5 | ObservableKind::Sha1 | ObservableKind::Sha256) => {
            hash_by_length(v)
        }
        Some(ObservableKind::Cve) => canonical_cve(v),
        Some(kind @ (ObservableKind::Filename | ObservableKind::User | ObservableKind::Other)) => {
            Some(Observable::new(kind, v))
        }
    }
}

fn classify_url(v: &str) -> Option<Observable> {
    if !v.contains("://") {
        return None;
    }
    canonical_url(trim_url_end(v)).map(|(u, _)| Observable::new(ObservableKind::Url, u))
}

fn classify_domain(v: &str) -> Option<Observable> {
    let d = v.trim_end_matches('.').to_lowercase();
    (d.contains('.') && valid_domain_labels(&d)).then(|| Observable::new(ObservableKind::Domain, d))
}

fn canonical_cve(v: &str) -> Option<Observable> {
    let up = v.to_ascii_uppercase();
    let rest = up.strip_prefix("CVE-")?;
    let (year, num) = rest.split_once('-')?;
    let ok = year.len() == 4
        && num.len() >= 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && num.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| Observable::new(ObservableKind::Cve, up.clone()))
}

/// The domain part of an email address, lowercased.
pub fn email_domain(address: &str) -> Option<String> {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim().trim_end_matches('>').to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept answers are `extract`'s, for texts seen again, past the cache's size, and for
    /// long texts that are not kept.
    #[test]
    fn repeated_texts_get_extracts_answer() {
        let texts: Vec<String> = (0..REPEATED_CACHE + 10)
            .map(|i| {
                format!(
                    "ET TROJAN beacon to evil{i}[.]example hxxp://10.0.{}.{}/x",
                    i / 256,
                    i % 256
                )
            })
            .chain([
                "a".repeat(REPEATED_MAX_LEN) + " 10.1.1.1",
                String::new(),
                "ET POLICY AnyDesk Remote Desktop Software in SNI".into(),
                (1..=12)
                    .map(|i| format!("10.9.9.{i}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ])
            .collect();
        for _ in 0..2 {
            for t in &texts {
                assert_eq!(extract_repeated(t), extract(t), "{t}");
            }
        }
        assert!(REPEATED.with(|c| c.borrow().len()) <= REPEATED_CACHE);
    }

    /// Found by fuzz/observables: a URL ran on through control characters (`\0`), and
    /// `classify` (what feeds and the API use) refused what `extract` gave, so such an
    /// indicator could never match.
    /// Found by fuzz/observables: `corp([.])com` refanged once to `corp(.)com`, which
    /// `classify` refanged again to `corp.com`, so an extracted URL did not classify as itself.
    #[test]
    fn refanging_is_idempotent_for_nested_defangs() {
        assert_eq!(refang("corp([.])com"), "corp.com");
        assert_eq!(refang("a[[.]]b {(dot)} c"), "a.b . c");
        let found = extract("click hxxps://evil[.]example([.])com/x?u=b[at]corp([.])net");
        assert_eq!(
            found.first(),
            Some(&Observable::new(
                ObservableKind::Url,
                "https://evil.example.com/x?u=b@corp.net"
            )),
            "{found:?}"
        );
        for o in &found {
            assert_eq!(classify(Some(o.kind), &o.value).as_ref(), Some(o));
        }
    }

    /// Found by fuzz/observables: `0::` (and `0.0.0.0`, a URL on `[::]`) came out as an IP that
    /// `classify` refuses: the unspecified address says "no address".
    #[test]
    fn unspecified_addresses_are_not_observables() {
        for text in [
            "0::",
            "from 0.0.0.0 to x",
            "0:0::0 up",
            "see http://[::]:8080/x",
        ] {
            let found = extract(text);
            assert!(
                found.iter().all(|o| o.kind != ObservableKind::Ip),
                "{text}: {found:?}"
            );
        }
        let found = extract("see http://0.0.0.0/x");
        assert_eq!(
            found,
            vec![Observable::new(ObservableKind::Url, "http://0.0.0.0/x")]
        );
        assert_eq!(extract("::1 and 0.0.0.1").len(), 2);
    }

    /// Found by fuzz/observables: a URL whose IPv6 host ends it (`http://[::a]`) lost its `]`
    /// as sentence punctuation, so it was not found in text, and `classify` refused the
    /// canonical form of `http://::a`.
    #[test]
    fn urls_ending_in_an_ipv6_host_keep_their_bracket() {
        let found = extract("see http://[2001:DB8::1] now, or (http://[::a]).");
        let url = |u: &str| Observable::new(ObservableKind::Url, u);
        assert!(found.contains(&url("http://[2001:db8::1]")), "{found:?}");
        assert!(found.contains(&url("http://[::a]")), "{found:?}");
        assert!(found.contains(&Observable::new(ObservableKind::Ip, "2001:db8::1")));
        for o in extract("http://::a") {
            assert_eq!(classify(Some(o.kind), &o.value), Some(o));
        }
        // brackets hold an IPv6 address and only a port follows them (found by fuzz/observables:
        // `http://[2]\u{fffd}` became `http://2\u{fffd}`, which classify refused)
        for bad in [
            "http://[2]\u{fffd}",
            "http://[2]/x",
            "http://[::1]x/",
            "http://[1.2.3.4]/",
        ] {
            let found = extract(bad);
            assert!(
                found.iter().all(|o| o.kind != ObservableKind::Url),
                "{bad}: {found:?}"
            );
        }
        assert!(extract("http://[::1]:8080/a").contains(&url("http://[::1]:8080/a")));
        assert_eq!(
            extract("at http://x.example/a]."),
            vec![
                url("http://x.example/a"),
                Observable::new(ObservableKind::Domain, "x.example")
            ]
        );
    }

    #[test]
    fn urls_end_at_control_characters() {
        let found = extract("see hxxps://evil[.]example/login\0\0\x01?a=b now");
        let url = Observable::new(ObservableKind::Url, "https://evil.example/login");
        assert_eq!(found.first(), Some(&url));
        assert_eq!(classify(Some(ObservableKind::Url), &url.value), Some(url));
    }
}
