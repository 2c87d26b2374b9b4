//! The benchmark's data, generated once from a fixed seed: Suricata EVE `alert` lines, an asset
//! CSV and suppression rules, with the exact figures the intake must report for them.
//!
//! Every distinct line has a key (signature, source IP, destination IP, sensor) no earlier
//! line has; a duplicate repeats an earlier line's content with a new timestamp, flow id and
//! source port, so Firebreak's default fingerprint (source + rule + host + the event's IP
//! addresses) makes it count on the earlier event.

use anyhow::{Context, Result};
use serde::Serialize;
use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::Path;

/// SplitMix64: small, fast, and the same sequence everywhere.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    pub fn range(&mut self, lo: u64, hi_inclusive: u64) -> u64 {
        lo + self.below(hi_inclusive - lo + 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum App {
    Http,
    Tls,
    Dns,
    Smb,
    Ssh,
    Tcp,
}

impl App {
    fn name(self) -> &'static str {
        match self {
            App::Http => "http",
            App::Tls => "tls",
            App::Dns => "dns",
            App::Smb => "smb",
            App::Ssh => "ssh",
            App::Tcp => "failed",
        }
    }
    fn proto(self) -> &'static str {
        match self {
            App::Dns => "UDP",
            _ => "TCP",
        }
    }
}

struct Class {
    prefix: &'static str,
    category: &'static str,
    app: App,
    ports: &'static [u16],
    phrases: &'static [&'static str],
    severities: &'static [u8],
    sig_sev: &'static [&'static str],
    tactic: &'static str,
    technique: &'static str,
    target: &'static str,
    /// How many of the 2,000 signatures are of this class (relative).
    share: u32,
}

const CLASSES: &[Class] = &[
    Class {
        prefix: "ET WEB_SERVER",
        category: "Web Application Attack",
        app: App::Http,
        ports: &[80, 8080, 8000],
        phrases: &[
            "Possible SQL Injection Attempt UNION SELECT",
            "WordPress Login Bruteforce Attempt",
            "Possible Apache Struts OGNL Expression Injection",
            "Suspicious User-Agent (sqlmap)",
            "PHP Remote File Inclusion Attempt",
            "Directory Traversal Attempt in URI",
            "Log4j JNDI Lookup Attempt in HTTP Header",
            "Possible XSS Attempt in Query Parameter",
            "ThinkPHP RCE Exploitation Attempt",
            "Generic Webshell Command Request",
        ],
        severities: &[1, 1, 2],
        sig_sev: &["Major", "Major", "Critical", "Minor"],
        tactic: "TA0001",
        technique: "T1190",
        target: "Web_Server",
        share: 18,
    },
    Class {
        prefix: "ET SCAN",
        category: "Attempted Information Leak",
        app: App::Tcp,
        ports: &[22, 23, 445, 1433, 3306, 3389, 5432, 5900, 6379, 9200],
        phrases: &[
            "Potential SSH Scan",
            "Suspicious inbound to MSSQL port 1433",
            "NMAP -sS window 1024",
            "Behavioral Unusual Port 445 traffic Potential Scan",
            "Potential VNC Scan 5900-5920",
            "Suspicious inbound to PostgreSQL port 5432",
            "Suspicious inbound to mySQL port 3306",
            "MS Terminal Server Traffic on Non-standard Port",
            "Redis INFO Command Probe",
            "Elasticsearch Cluster Enumeration",
        ],
        severities: &[2, 2, 3],
        sig_sev: &["Minor", "Informational", "Major"],
        tactic: "TA0043",
        technique: "T1595",
        target: "Server",
        share: 20,
    },
    Class {
        prefix: "ET POLICY",
        category: "Potential Corporate Privacy Violation",
        app: App::Tls,
        ports: &[443, 8443],
        phrases: &[
            "Observed DNS over HTTPS Domain in TLS SNI",
            "Dropbox.com Offsite File Backup in Use",
            "External IP Lookup Service in TLS SNI",
            "TeamViewer Dyngate Session",
            "AnyDesk Remote Desktop Software in SNI",
            "Cloud Storage Upload Observed",
            "Pastebin-style Service in TLS SNI",
        ],
        severities: &[1, 2, 3],
        sig_sev: &["Informational", "Minor", "Major"],
        tactic: "TA0010",
        technique: "T1567",
        target: "Client_Endpoint",
        share: 16,
    },
    Class {
        prefix: "ET INFO",
        category: "Misc activity",
        app: App::Dns,
        ports: &[53],
        phrases: &[
            "Observed DNS Query to .cloud TLD",
            "DYNAMIC_DNS Query to a duckdns Domain",
            "Observed DNS Query to .top TLD",
            "DNS Query for Suspicious .xyz Domain",
            "Observed DNS Query to File Transfer Service Domain",
            "Lookup of Public Resolver Test Domain",
        ],
        severities: &[2, 2, 3],
        sig_sev: &["Informational", "Minor", "Informational"],
        tactic: "TA0011",
        technique: "T1071",
        target: "Client_Endpoint",
        share: 10,
    },
    Class {
        prefix: "ET MALWARE",
        category: "A Network Trojan was detected",
        app: App::Tls,
        ports: &[443, 8443, 4443],
        phrases: &[
            "Cobalt Strike Beacon Observed",
            "Observed Malicious SSL Cert (QakBot)",
            "Possible Emotet C2 Activity",
            "Win32/Lumma Stealer CnC Checkin",
            "Sliver C2 Implant Checkin",
            "JA3 Hash - Suspected Meterpreter",
        ],
        severities: &[1],
        sig_sev: &["Major", "Critical"],
        tactic: "TA0011",
        technique: "T1071",
        target: "Client_Endpoint",
        share: 12,
    },
    Class {
        prefix: "ET EXPLOIT",
        category: "Attempted Administrator Privilege Gain",
        app: App::Smb,
        ports: &[445, 139],
        phrases: &[
            "Possible ETERNALBLUE MS17-010 Echo Request",
            "Possible Zerologon NetrServerReqChallenge",
            "SMBv3 Compression Buffer Overflow Attempt",
            "PrintNightmare Remote Driver Load Attempt",
        ],
        severities: &[1],
        sig_sev: &["Critical", "Major"],
        tactic: "TA0008",
        technique: "T1210",
        target: "SMB_Server",
        share: 8,
    },
    Class {
        prefix: "ET HUNTING",
        category: "Not Suspicious Traffic",
        app: App::Ssh,
        ports: &[22, 2222],
        phrases: &[
            "SSH Client Banner Observed on Non-Standard Port",
            "Outdated OpenSSH Version Observed",
            "Internal Host SSH Session to External Server",
            "Observed SSH Key Exchange with Legacy Cipher",
        ],
        severities: &[2, 2, 3],
        sig_sev: &["Informational", "Minor"],
        tactic: "TA0007",
        technique: "T1046",
        target: "Server",
        share: 8,
    },
    Class {
        prefix: "SURICATA",
        category: "Generic Protocol Command Decode",
        app: App::Tcp,
        ports: &[80, 443, 25, 110, 143, 8080],
        phrases: &[
            "STREAM ESTABLISHED packet out of window",
            "STREAM Packet with invalid ack",
            "STREAM 3way handshake SYNACK with wrong ack",
            "HTTP unable to match response to request",
            "TLS invalid record type",
            "Applayer Detect protocol only one direction",
        ],
        severities: &[3],
        sig_sev: &["Informational"],
        tactic: "TA0005",
        technique: "T1027",
        target: "Any",
        share: 8,
    },
];

const VARIANTS: &[&str] = &[
    "",
    " (Inbound)",
    " (Outbound)",
    " M1",
    " M2",
    " M3",
    " - Observed",
    " (set)",
];

const SENSORS: &[(&str, &str)] = &[
    ("sensor-dmz-01", "ens1f0"),
    ("sensor-dmz-02", "ens1f0"),
    ("sensor-core-01", "ens2f1"),
    ("sensor-core-02", "ens2f1"),
    ("sensor-dc-01", "bond0"),
    ("sensor-branch-01", "eth1"),
    ("sensor-branch-02", "eth1"),
    ("sensor-cloud-01", "ens5"),
];

const ROLES: &[&str] = &[
    "web", "db", "app", "mail", "dns", "file", "dc", "vpn", "k8s", "build",
];
const TEAMS: &[&str] = &[
    "team-web",
    "team-data",
    "team-platform",
    "team-identity",
    "team-network",
    "team-payments",
    "team-mail",
    "team-build",
    "team-corp-it",
    "team-security",
];
const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "sqlmap/1.8.11#stable (https://sqlmap.org)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Go-http-client/1.1",
    "Mozilla/5.0 zgrab/0.x",
    "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
];
const URLS: &[&str] = &[
    "/wp-login.php",
    "/index.php?id=1%20UNION%20SELECT%20NULL,NULL,NULL--",
    "/cgi-bin/.%2e/.%2e/.%2e/etc/passwd",
    "/struts2-showcase/index.action",
    "/api/v1/users?search=%3Cscript%3Ealert(1)%3C/script%3E",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/.env",
    "/admin/config.php",
    "/login?redirect=%2Fdashboard",
    "/search?q=%24%7Bjndi%3Aldap%3A%2F%2Fcallback%7D",
];
const WEB_HOSTS: &[&str] = &[
    "www.example-shop.com",
    "portal.example.org",
    "intranet.corp.example",
    "api.example-pay.net",
    "static.example-cdn.net",
];
const SNI: &[&str] = &[
    "dns.google",
    "cloudflare-dns.com",
    "content.dropboxapi.com",
    "api.ipify.org",
    "update-check.example.top",
    "cdn.example-files.xyz",
    "pastebin.com",
    "relay.anydesk.com",
];
const RRNAMES: &[&str] = &[
    "update.example.cloud",
    "myhome.duckdns.org",
    "files.example.top",
    "login-check.example.xyz",
    "transfer.sh",
    "whoami.akamai.net",
];
const SIGNATURES: usize = 2_000;
const SRC_POOL: usize = 50_000;
/// Internal scanners (src 10.250.0.x).
const SCANNERS: u32 = 50;
/// Line spacing, at most (the timestamps stay within one day).
const MAX_SPACING_US: u64 = 5_000;

pub struct Sig {
    sid: u32,
    rev: u32,
    msg: String,
    class: usize,
    severity: u8,
    sig_sev: &'static str,
}

impl Sig {
    /// Firebreak's severity of an alert of this signature: Suricata's 1/2/3 as
    /// high/medium/low, raised by `signature_severity` Major (high) or Critical (critical).
    fn level(&self) -> &'static str {
        let base: usize = match self.severity {
            1 => 2,
            2 => 1,
            _ => 0,
        };
        let raised = match self.sig_sev {
            "Critical" => 3,
            "Major" => 2,
            _ => 0,
        };
        ["low", "medium", "high", "critical"][base.max(raised)]
    }
}

/// The catalog every line is drawn from.
pub struct World {
    sigs: Vec<Sig>,
    /// Cumulative Zipf weights over `sigs` (rank order = index order).
    cdf: Vec<f64>,
    src_pool: Vec<u32>,
    /// (address, asset index)
    asset_addrs: Vec<(u32, usize)>,
    asset_fqdn: Vec<String>,
    asset_role: Vec<usize>,
}

fn ip_text(ip: u32) -> String {
    let b = ip.to_be_bytes();
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

fn ip(a: u32, b: u32, c: u32, d: u32) -> u32 {
    (a << 24) | (b << 16) | (c << 8) | d
}

fn public_ip(rng: &mut Rng) -> u32 {
    loop {
        let a = rng.range(1, 223) as u32;
        if matches!(a, 10 | 100 | 127 | 169 | 172 | 192 | 198 | 203) {
            continue;
        }
        return ip(
            a,
            rng.below(256) as u32,
            rng.below(256) as u32,
            rng.range(1, 254) as u32,
        );
    }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Params {
    pub events: u64,
    pub dup_ratio: f64,
    pub rules: usize,
    /// How many of the rules are non-literal (at most 3).
    #[serde(default = "three")]
    pub non_literal_rules: usize,
    pub assets: usize,
    pub seed: u64,
    pub version: u32,
}

fn three() -> usize {
    3
}

/// What was generated and what the intake must report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Generated {
    pub params: Params,
    pub lines: u64,
    pub bytes: u64,
    pub distinct: u64,
    pub duplicates: u64,
    /// Lines (first occurrences and repeats) some suppression rule matches.
    pub suppressed_lines: u64,
    /// Distinct events some suppression rule matches.
    pub suppressed_distinct: u64,
    /// Lines whose signature one of the literal `rule_id` rules names.
    pub literal_rule_lines: u64,
    /// Lines whose destination is an asset address.
    pub asset_hit_lines: u64,
    pub signatures_used: u64,
    pub src_ips_used: u64,
    pub http_lines: u64,
    pub assets_critical: u64,
    pub asset_addresses: u64,
    pub rules: Vec<RuleOut>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RuleOut {
    pub name: String,
    pub condition: String,
    pub reason: String,
}

/// A non-literal rule, evaluated here the way Firebreak's CEL does.
enum Check {
    /// `event.source == "suricata" && event.rule_id == "<sid>"`
    Sid(u32),
    /// `event.fields.dest_port == 53 && event.severity == "low"`
    DnsLow,
    /// `event.fields.category == "Not Suspicious Traffic" && event.severity == "low"`
    NotSuspiciousLow,
    /// `event.fields.src_ip.startsWith("10.250.") && event.fields.signature_severity == "Informational"`
    ScannerInformational,
}

struct Content<'w> {
    sig: &'w Sig,
    class: &'w Class,
    src: u32,
    dst: u32,
    dest_port: u16,
    sensor: usize,
    asset_hit: Option<usize>,
    rng: Rng,
}

impl World {
    pub fn new(seed: u64, assets: usize) -> World {
        let mut rng = Rng::new(seed ^ 0x005E_ED0F_F1BE);
        // signatures: classes by share, then a shuffled rank order for the Zipf weights
        let total_share: u32 = CLASSES.iter().map(|c| c.share).sum();
        let mut sigs = Vec::with_capacity(SIGNATURES);
        let mut seen = HashSet::new();
        for (ci, c) in CLASSES.iter().enumerate() {
            let n = (SIGNATURES as u32 * c.share / total_share) as usize;
            for k in 0..n {
                let base: u32 = match c.prefix {
                    "SURICATA" => 2_200_000,
                    "ET HUNTING" => 2_030_000,
                    _ => 2_000_000 + (ci as u32) * 4_000,
                };
                let mut sid = base + rng.below(3_900) as u32;
                while !seen.insert(sid) {
                    sid += 1;
                }
                let phrase = c.phrases[k % c.phrases.len()];
                let variant = VARIANTS[(k / c.phrases.len()) % VARIANTS.len()];
                let round = k / (c.phrases.len() * VARIANTS.len());
                let msg = if round == 0 {
                    format!("{} {phrase}{variant}", c.prefix)
                } else {
                    format!("{} {phrase}{variant} {}", c.prefix, round + 1)
                };
                sigs.push(Sig {
                    sid,
                    rev: rng.range(1, 12) as u32,
                    msg,
                    class: ci,
                    severity: rng.pick(c.severities),
                    sig_sev: rng.pick(c.sig_sev),
                });
            }
        }
        while sigs.len() < SIGNATURES {
            // rounding: fill with scans
            let k = sigs.len();
            let mut sid = 2_100_000 + k as u32;
            while !seen.insert(sid) {
                sid += 1;
            }
            sigs.push(Sig {
                sid,
                rev: 1,
                msg: format!("ET SCAN Generic Probe {k}"),
                class: 1,
                severity: 2,
                sig_sev: "Minor",
            });
        }
        // shuffle the rank order (Fisher-Yates)
        for i in (1..sigs.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            sigs.swap(i, j);
        }
        let mut cdf = Vec::with_capacity(sigs.len());
        let mut acc = 0.0;
        for r in 0..sigs.len() {
            acc += 1.0 / (r as f64 + 1.0);
            cdf.push(acc);
        }
        for x in &mut cdf {
            *x /= acc;
        }

        // sources: external addresses, internal workstations (10.200/16), scanners (10.250.0/24)
        let mut src_set = HashSet::new();
        let mut src_pool = Vec::with_capacity(SRC_POOL);
        for s in 1..=SCANNERS {
            src_set.insert(ip(10, 250, 0, s));
            src_pool.push(ip(10, 250, 0, s));
        }
        while src_pool.len() < SRC_POOL {
            let a = if rng.chance(0.1) {
                ip(10, 200, rng.below(256) as u32, rng.range(1, 254) as u32)
            } else {
                public_ip(&mut rng)
            };
            if src_set.insert(a) {
                src_pool.push(a);
            }
        }

        // assets: 10.1.0.0 - 10.99.255.255, 1-3 addresses each, some with a DNS name
        let mut addr_set = HashSet::new();
        let mut asset_addrs = Vec::new();
        let mut asset_fqdn = Vec::with_capacity(assets);
        let mut asset_role = Vec::with_capacity(assets);
        for i in 0..assets {
            let n = 1 + usize::from(rng.chance(0.3)) + usize::from(rng.chance(0.05));
            for _ in 0..n {
                loop {
                    let a = ip(
                        10,
                        rng.range(1, 99) as u32,
                        rng.below(256) as u32,
                        rng.range(1, 254) as u32,
                    );
                    if addr_set.insert(a) {
                        asset_addrs.push((a, i));
                        break;
                    }
                }
            }
            let role = rng.below(ROLES.len() as u64) as usize;
            asset_role.push(role);
            asset_fqdn.push(format!("srv-{}-{:05}.corp.example", ROLES[role], i + 1));
        }
        World {
            sigs,
            cdf,
            src_pool,
            asset_addrs,
            asset_fqdn,
            asset_role,
        }
    }

    fn zipf(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|&c| c < u)
            .min(self.sigs.len() - 1)
    }

    /// The CSV `POST /api/v1/assets/import` takes; returns (critical count, address count).
    pub fn write_assets(&self, path: &Path, seed: u64) -> Result<(u64, u64)> {
        let mut rng = Rng::new(seed ^ 0xA55E_7500);
        let n = self.asset_fqdn.len();
        let mut addrs: Vec<Vec<String>> = vec![Vec::new(); n];
        for (a, i) in &self.asset_addrs {
            addrs[*i].push(ip_text(*a));
        }
        let mut out = String::from("name,addresses,owner,critical_production\n");
        let mut critical = 0;
        for i in 0..n {
            let mut list = addrs[i].clone();
            if rng.chance(0.5) {
                list.push(self.asset_fqdn[i].clone());
            }
            let crit = rng.chance(0.02);
            critical += u64::from(crit);
            out.push_str(&format!(
                "srv-{}-{:05},{},{},{}\n",
                ROLES[self.asset_role[i]],
                i + 1,
                list.join(";"),
                rng.pick(TEAMS),
                crit
            ));
        }
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
        Ok((critical, self.asset_addrs.len() as u64))
    }

    /// The suppression rules: literal `rule_id` rules for signatures that together cover
    /// about 10% of the lines, and three non-literal ones.
    fn rules(&self, count: usize, non_literal: usize) -> (Vec<RuleOut>, Vec<Check>) {
        let non_literal = count.min(non_literal).min(3);
        let literal = count - non_literal;
        // probability of rank r, and the window of `literal` consecutive ranks whose sum is
        // closest to 10%
        let p = |r: usize| self.cdf[r] - if r == 0 { 0.0 } else { self.cdf[r - 1] };
        let mut best = (f64::MAX, 0usize);
        if literal > 0 {
            for start in 0..self.sigs.len().saturating_sub(literal) {
                let s: f64 = (start..start + literal).map(p).sum();
                let d = (s - 0.10).abs();
                if d < best.0 {
                    best = (d, start);
                }
            }
        }
        let mut rules = Vec::new();
        let mut checks = Vec::new();
        for r in best.1..best.1 + literal {
            let s = &self.sigs[r];
            rules.push(RuleOut {
                name: format!("noisy {}", s.sid),
                condition: format!(
                    "event.source == \"suricata\" && event.rule_id == \"{}\"",
                    s.sid
                ),
                reason: format!("known noise: {}", s.msg),
            });
            checks.push(Check::Sid(s.sid));
        }
        let extra = [
            (
                "low-severity DNS alerts",
                "event.fields.dest_port == 53 && event.severity == \"low\"",
                "resolver noise; reviewed weekly",
                Check::DnsLow,
            ),
            (
                "not suspicious, low",
                "event.fields.category == \"Not Suspicious Traffic\" && event.severity == \"low\"",
                "hunting signatures are for threat hunting, not the queue",
                Check::NotSuspiciousLow,
            ),
            (
                "internal scanners, informational",
                "event.fields.src_ip.startsWith(\"10.250.\") && event.fields.signature_severity == \"Informational\"",
                "the vulnerability scanners of 10.250.0.0/24",
                Check::ScannerInformational,
            ),
        ];
        for (name, cond, reason, check) in extra.into_iter().take(non_literal) {
            rules.push(RuleOut {
                name: name.into(),
                condition: cond.into(),
                reason: reason.into(),
            });
            checks.push(check);
        }
        (rules, checks)
    }

    /// The key and content of one distinct line, from its seed.
    fn content(&self, seed: u64) -> Content<'_> {
        let mut rng = Rng::new(seed);
        let si = self.zipf(&mut rng);
        let sig = &self.sigs[si];
        let class = &CLASSES[sig.class];
        let sensor = rng.below(SENSORS.len() as u64) as usize;
        // scanners only run scans and hunting signatures; a few percent of those lines
        let src = if matches!(class.prefix, "ET SCAN" | "ET HUNTING") && rng.chance(0.05) {
            self.src_pool[rng.below(u64::from(SCANNERS)) as usize]
        } else {
            self.src_pool[rng.range(u64::from(SCANNERS), SRC_POOL as u64 - 1) as usize]
        };
        let (dst, asset_hit) = if rng.chance(0.30) {
            let (a, i) = rng.pick(&self.asset_addrs);
            (a, Some(i))
        } else if rng.chance(0.5) {
            (
                ip(
                    172,
                    rng.range(16, 31) as u32,
                    rng.below(256) as u32,
                    rng.range(1, 254) as u32,
                ),
                None,
            )
        } else {
            (public_ip(&mut rng), None)
        };
        let dest_port = rng.pick(class.ports);
        Content {
            sig,
            class,
            src,
            dst,
            dest_port,
            sensor,
            asset_hit,
            rng,
        }
    }

    /// What the default fingerprint sees: the rule, the sensor and the set of IP addresses.
    fn key(c: &Content<'_>) -> u128 {
        (u128::from(c.sig.sid) << 72)
            | (u128::from(c.src.min(c.dst)) << 40)
            | (u128::from(c.src.max(c.dst)) << 8)
            | c.sensor as u128
    }

    fn suppressed(c: &Content<'_>, checks: &[Check]) -> bool {
        let level = c.sig.level();
        let src_text = ip_text(c.src);
        checks.iter().any(|k| match k {
            Check::Sid(s) => *s == c.sig.sid,
            Check::DnsLow => c.dest_port == 53 && level == "low",
            Check::NotSuspiciousLow => {
                c.class.category == "Not Suspicious Traffic" && level == "low"
            }
            Check::ScannerInformational => {
                src_text.starts_with("10.250.") && c.sig.sig_sev == "Informational"
            }
        })
    }
}

#[derive(Serialize)]
struct EveOut<'a> {
    timestamp: &'a str,
    flow_id: u64,
    in_iface: &'a str,
    event_type: &'a str,
    src_ip: &'a str,
    src_port: u16,
    dest_ip: &'a str,
    dest_port: u16,
    proto: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tx_id: Option<u32>,
    app_proto: &'a str,
    host: &'a str,
    alert: AlertOut<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<HttpOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TlsOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dns: Option<DnsOut<'a>>,
    flow: FlowOut<'a>,
}

#[derive(Serialize)]
struct AlertOut<'a> {
    action: &'a str,
    gid: u32,
    signature_id: u32,
    rev: u32,
    signature: &'a str,
    category: &'a str,
    severity: u8,
    metadata: MetaOut<'a>,
}

#[derive(Serialize)]
struct MetaOut<'a> {
    attack_target: [&'a str; 1],
    signature_severity: [&'a str; 1],
    mitre_tactic_id: [&'a str; 1],
    mitre_technique_id: [&'a str; 1],
}

#[derive(Serialize)]
struct HttpOut<'a> {
    hostname: &'a str,
    url: &'a str,
    http_user_agent: &'a str,
    http_method: &'a str,
    status: u16,
    length: u32,
}

#[derive(Serialize)]
struct TlsOut<'a> {
    sni: &'a str,
    version: &'a str,
    ja3: Ja3<'a>,
}

#[derive(Serialize)]
struct Ja3<'a> {
    hash: &'a str,
}

#[derive(Serialize)]
struct DnsOut<'a> {
    query: [DnsQ<'a>; 1],
}

#[derive(Serialize)]
struct DnsQ<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: u16,
    rrname: &'a str,
    rrtype: &'a str,
}

#[derive(Serialize)]
struct FlowOut<'a> {
    pkts_toserver: u32,
    pkts_toclient: u32,
    bytes_toserver: u32,
    bytes_toclient: u32,
    start: &'a str,
}

/// `2026-11-20T10:15:02.123456+0000` for `micros` after 2026-11-20T00:00:00.
fn suricata_time(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let us = micros % 1_000_000;
    let day = 20 + secs / 86_400;
    let s = secs % 86_400;
    format!(
        "2026-11-{day:02}T{:02}:{:02}:{:02}.{us:06}+0000",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

impl World {
    /// One line (with its newline) for `c`, at `micros`, with this flow id and source port.
    fn line(
        &self,
        c: &Content<'_>,
        micros: u64,
        flow_id: u64,
        src_port: u16,
        out: &mut Vec<u8>,
    ) -> Result<bool> {
        // content that must be the same in a repeat comes from the content's own rng
        let mut rng = c.rng.clone();
        let ts = suricata_time(micros);
        let start = suricata_time(micros.saturating_sub(rng.range(1_000, 900_000)));
        let src = ip_text(c.src);
        let dst = ip_text(c.dst);
        let (sensor, iface) = SENSORS[c.sensor];
        let sig = c.sig;
        let class = c.class;
        let app = class.app;
        let asset_host = c
            .asset_hit
            .filter(|_| rng.chance(0.5))
            .map(|i| self.asset_fqdn[i].as_str());
        let http = (app == App::Http).then(|| HttpOut {
            hostname: asset_host.unwrap_or_else(|| rng.pick(WEB_HOSTS)),
            url: rng.pick(URLS),
            http_user_agent: rng.pick(USER_AGENTS),
            http_method: if rng.chance(0.3) { "POST" } else { "GET" },
            status: rng.pick(&[200u16, 301, 302, 403, 404, 500]),
            length: rng.range(0, 60_000) as u32,
        });
        let ja3 = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
        let sni = rng.pick(SNI);
        let tls = (app == App::Tls).then(|| TlsOut {
            sni,
            version: "TLS 1.3",
            ja3: Ja3 { hash: &ja3 },
        });
        let dns = (app == App::Dns).then(|| DnsOut {
            query: [DnsQ {
                kind: "query",
                id: rng.below(65_536) as u16,
                rrname: rng.pick(RRNAMES),
                rrtype: "A",
            }],
        });
        let pkts_toserver = rng.range(1, 40) as u32;
        let pkts_toclient = rng.range(0, 40) as u32;
        let ev = EveOut {
            timestamp: &ts,
            flow_id,
            in_iface: iface,
            event_type: "alert",
            src_ip: &src,
            src_port,
            dest_ip: &dst,
            dest_port: c.dest_port,
            proto: app.proto(),
            tx_id: (app == App::Http).then_some(0),
            app_proto: app.name(),
            host: sensor,
            alert: AlertOut {
                action: "allowed",
                gid: 1,
                signature_id: sig.sid,
                rev: sig.rev,
                signature: &sig.msg,
                category: class.category,
                severity: sig.severity,
                metadata: MetaOut {
                    attack_target: [class.target],
                    signature_severity: [sig.sig_sev],
                    mitre_tactic_id: [class.tactic],
                    mitre_technique_id: [class.technique],
                },
            },
            http,
            tls,
            dns,
            flow: FlowOut {
                pkts_toserver,
                pkts_toclient,
                bytes_toserver: pkts_toserver * rng.range(60, 1_400) as u32,
                bytes_toclient: pkts_toclient * rng.range(60, 1_400) as u32,
                start: &start,
            },
        };
        serde_json::to_writer(&mut *out, &ev)?;
        out.push(b'\n');
        Ok(app == App::Http)
    }
}

/// Writes the EVE file, the asset CSV and the rules; returns what the intake must report.
pub fn generate(params: &Params, eve: &Path, assets_csv: &Path) -> Result<Generated> {
    let started = std::time::Instant::now();
    let world = World::new(params.seed, params.assets);
    let (assets_critical, asset_addresses) = world.write_assets(assets_csv, params.seed)?;
    let (rules, checks) = world.rules(params.rules, params.non_literal_rules);

    let n = params.events;
    let dups_wanted = ((n as f64) * params.dup_ratio).round() as u64;
    let dups_wanted = dups_wanted.min(n.saturating_sub(1));
    let spacing = MAX_SPACING_US.min(20 * 3600 * 1_000_000 / n.max(1)).max(1);
    let mut rng = Rng::new(params.seed);
    let file = std::fs::File::create(eve).with_context(|| format!("creating {}", eve.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut seeds: Vec<u64> = Vec::with_capacity(n as usize);
    let mut suppressed_of: Vec<bool> = Vec::with_capacity(n as usize);
    let mut keys: HashSet<u128> = HashSet::with_capacity(n as usize);
    let mut sigs_used = HashSet::new();
    let mut srcs_used = HashSet::new();
    let mut buf = Vec::with_capacity(2048);
    let mut g = Generated {
        params: params.clone(),
        lines: 0,
        bytes: 0,
        distinct: 0,
        duplicates: 0,
        suppressed_lines: 0,
        suppressed_distinct: 0,
        literal_rule_lines: 0,
        asset_hit_lines: 0,
        signatures_used: 0,
        src_ips_used: 0,
        http_lines: 0,
        assets_critical,
        asset_addresses,
        rules,
        seconds: 0.0,
    };
    let literal: HashSet<u32> = checks
        .iter()
        .filter_map(|c| match c {
            Check::Sid(s) => Some(*s),
            _ => None,
        })
        .collect();
    let mut dups_left = dups_wanted;
    for i in 0..n {
        // selection sampling: exactly `dups_wanted` of lines 1..n are repeats
        let dup = i > 0 && dups_left > 0 && rng.below(n - i) < dups_left;
        let micros = 10 * 3600 * 1_000_000 + i * spacing + rng.below(spacing);
        let flow_id = rng.below(1 << 51) + 1;
        let src_port = rng.range(1_024, 65_535) as u16;
        let (seed, sup) = if dup {
            dups_left -= 1;
            let j = rng.below(seeds.len() as u64) as usize;
            g.duplicates += 1;
            (seeds[j], suppressed_of[j])
        } else {
            let seed = loop {
                let s = rng.next_u64();
                let c = world.content(s);
                if keys.insert(World::key(&c)) {
                    break s;
                }
            };
            let c = world.content(seed);
            let sup = World::suppressed(&c, &checks);
            seeds.push(seed);
            suppressed_of.push(sup);
            g.distinct += 1;
            g.suppressed_distinct += u64::from(sup);
            sigs_used.insert(c.sig.sid);
            srcs_used.insert(c.src);
            (seed, sup)
        };
        let c = world.content(seed);
        g.suppressed_lines += u64::from(sup);
        g.literal_rule_lines += u64::from(literal.contains(&c.sig.sid));
        g.asset_hit_lines += u64::from(c.asset_hit.is_some());
        buf.clear();
        let http = world.line(&c, micros, flow_id, src_port, &mut buf)?;
        g.http_lines += u64::from(http);
        g.bytes += buf.len() as u64;
        g.lines += 1;
        w.write_all(&buf)?;
    }
    w.flush()?;
    g.signatures_used = sigs_used.len() as u64;
    g.src_ips_used = srcs_used.len() as u64;
    g.seconds = started.elapsed().as_secs_f64();
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_suricata_format() {
        assert_eq!(
            suricata_time(10 * 3600 * 1_000_000 + 15 * 60 * 1_000_000 + 2_123_456),
            "2026-11-20T10:15:02.123456+0000"
        );
    }

    #[test]
    fn exact_duplicates_and_unique_keys() {
        let dir = std::env::temp_dir().join(format!("fbbench-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = Params {
            events: 20_000,
            dup_ratio: 0.05,
            rules: 20,
            non_literal_rules: 3,
            assets: 500,
            seed: 7,
            version: 1,
        };
        let g = generate(&p, &dir.join("eve.json"), &dir.join("assets.csv")).unwrap();
        assert_eq!(g.duplicates, 1_000);
        assert_eq!(g.distinct + g.duplicates, 20_000);
        assert_eq!(g.rules.len(), 20);
        let text = std::fs::read_to_string(dir.join("eve.json")).unwrap();
        assert_eq!(text.lines().count(), 20_000);
        for l in text.lines().take(100) {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["event_type"], "alert");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
