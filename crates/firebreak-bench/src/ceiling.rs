//! The ceilings the intake is compared with, measured in the same run on the same file, one
//! thread: serde_json into a borrowed typed struct of the main EVE fields (PERFORMANCE.md d1),
//! and into `serde_json::Value` (d3).

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

#[derive(Deserialize)]
struct BareEve<'a> {
    #[serde(borrow)]
    timestamp: &'a str,
    flow_id: u64,
    #[serde(borrow)]
    in_iface: &'a str,
    #[serde(borrow)]
    event_type: &'a str,
    #[serde(borrow)]
    src_ip: &'a str,
    src_port: u16,
    #[serde(borrow)]
    dest_ip: &'a str,
    dest_port: u16,
    #[serde(borrow)]
    proto: &'a str,
    #[serde(borrow, default)]
    app_proto: Option<&'a str>,
    #[serde(borrow)]
    host: &'a str,
    #[serde(borrow, default)]
    alert: Option<BareAlert<'a>>,
    #[serde(borrow, default)]
    http: Option<BareHttp<'a>>,
}

#[derive(Deserialize)]
struct BareAlert<'a> {
    #[serde(borrow)]
    action: &'a str,
    gid: u32,
    signature_id: u64,
    rev: u32,
    #[serde(borrow)]
    signature: &'a str,
    #[serde(borrow)]
    category: &'a str,
    severity: u8,
    #[serde(borrow, default)]
    metadata: Option<BareMeta<'a>>,
}

#[derive(Deserialize)]
struct BareMeta<'a> {
    #[serde(borrow, default)]
    signature_severity: Vec<&'a str>,
}

#[derive(Deserialize)]
struct BareHttp<'a> {
    #[serde(borrow, default)]
    hostname: Option<&'a str>,
    #[serde(borrow, default)]
    url: Option<&'a str>,
    #[serde(borrow, default)]
    http_user_agent: Option<&'a str>,
    #[serde(borrow, default)]
    http_method: Option<&'a str>,
    #[serde(default)]
    status: Option<u16>,
}

impl BareEve<'_> {
    /// Touches every field so that none is optimized away.
    fn weight(&self) -> u64 {
        let mut w = self.timestamp.len()
            + self.in_iface.len()
            + self.event_type.len()
            + self.src_ip.len()
            + self.dest_ip.len()
            + self.proto.len()
            + self.app_proto.map_or(0, str::len)
            + self.host.len();
        w += usize::from(self.src_port) + usize::from(self.dest_port);
        if let Some(a) = &self.alert {
            w += a.action.len() + a.signature.len() + a.category.len();
            w += a.gid as usize + a.signature_id as usize + a.rev as usize;
            w += usize::from(a.severity);
            if let Some(m) = &a.metadata {
                w += m.signature_severity.iter().map(|s| s.len()).sum::<usize>();
            }
        }
        if let Some(h) = &self.http {
            w += h.hostname.map_or(0, str::len)
                + h.url.map_or(0, str::len)
                + h.http_user_agent.map_or(0, str::len)
                + h.http_method.map_or(0, str::len)
                + usize::from(h.status.unwrap_or(0));
        }
        (w as u64) ^ self.flow_id
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Pass {
    pub seconds: f64,
    pub lines_per_s: f64,
    pub mb_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Ceilings {
    pub lines: u64,
    pub bytes: u64,
    /// Each pass of the typed, borrowed parse.
    pub typed: Vec<Pass>,
    pub value: Vec<Pass>,
    /// Median of the passes.
    pub typed_lines_per_s: f64,
    pub typed_mb_per_s: f64,
    pub value_lines_per_s: f64,
    pub value_mb_per_s: f64,
}

pub fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn pass(text: &str, typed: bool) -> Result<Pass> {
    let started = Instant::now();
    let mut lines = 0u64;
    let mut acc = 0u64;
    for line in text.lines() {
        if typed {
            let e: BareEve<'_> = serde_json::from_str(line)
                .with_context(|| format!("line {}: not an EVE alert", lines + 1))?;
            acc = acc.wrapping_add(black_box(&e).weight());
        } else {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("line {}: not JSON", lines + 1))?;
            acc = acc.wrapping_add(black_box(&v).as_object().map_or(0, |o| o.len() as u64));
        }
        lines += 1;
    }
    black_box(acc);
    let seconds = started.elapsed().as_secs_f64();
    Ok(Pass {
        seconds,
        lines_per_s: lines as f64 / seconds,
        mb_per_s: text.len() as f64 / seconds / 1e6,
    })
}

/// `passes` passes of each parse over the file (read into memory first, not timed).
pub fn measure(eve: &Path, passes: usize) -> Result<Ceilings> {
    let text =
        std::fs::read_to_string(eve).with_context(|| format!("reading {}", eve.display()))?;
    let lines = text.lines().count() as u64;
    if lines == 0 {
        bail!("{} is empty", eve.display());
    }
    let mut typed = Vec::new();
    let mut value = Vec::new();
    for _ in 0..passes.max(1) {
        typed.push(pass(&text, true)?);
        value.push(pass(&text, false)?);
    }
    let med = |v: &[Pass], f: fn(&Pass) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    Ok(Ceilings {
        lines,
        bytes: text.len() as u64,
        typed_lines_per_s: med(&typed, |p| p.lines_per_s),
        typed_mb_per_s: med(&typed, |p| p.mb_per_s),
        value_lines_per_s: med(&value, |p| p.lines_per_s),
        value_mb_per_s: med(&value, |p| p.mb_per_s),
        typed,
        value,
    })
}
