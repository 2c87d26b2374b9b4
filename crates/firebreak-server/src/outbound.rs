//! The one outbound HTTP client for everything a user can point somewhere (intel connectors,
//! Slack/Teams, feeds): the target's name is resolved once, every address is checked (no
//! loopback, private, link-local/metadata, CGNAT, ULA, multicast or reserved address unless
//! the connector is allowlisted or the address is in `[outbound] allow_networks`), the
//! connection is pinned to the checked address, redirects are followed by hand (at most 3,
//! each re-checked), plain `http://` only for allowlisted targets, with a time and a size
//! limit.

use crate::webhook::is_internal;
use firebreak_app::intel::{HttpClient, OutboundRequest, OutboundResponse};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

/// `[outbound]` in firebreak.toml.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Internal networks outbound requests may reach anyway (`10.20.0.0/16`, `192.0.2.7`).
    #[serde(default)]
    pub allow_networks: Vec<String>,
}

/// A network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: bad prefix length"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }
}

impl Network {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

pub struct GuardedClient {
    allow: Vec<Network>,
}

const MAX_REDIRECTS: usize = 3;

impl GuardedClient {
    pub fn new(c: &OutboundConfig) -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        let allow = c
            .allow_networks
            .iter()
            .map(|s| {
                s.parse::<Network>()
                    .map_err(|e| anyhow::anyhow!("outbound.allow_networks: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { allow })
    }

    fn allowed(&self, ip: IpAddr, allow_private: bool) -> bool {
        allow_private || !is_internal(ip) || self.allow.iter().any(|n| n.contains(ip))
    }

    /// Checks a URL and resolves it to the one address the connection will use.
    pub async fn check(
        &self,
        url: &reqwest::Url,
        allow_private: bool,
    ) -> Result<SocketAddr, String> {
        match url.scheme() {
            "https" => {}
            "http" if allow_private => {}
            "http" => {
                return Err(
                    "refused: plain http:// is only for allowlisted internal targets; use https://"
                        .into(),
                );
            }
            other => return Err(format!("refused: scheme {other:?}")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("refused: credentials in the URL".into());
        }
        let host = url.host_str().ok_or("refused: the URL has no host")?;
        let port = url.port_or_known_default().ok_or("refused: no port")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio::net::lookup_host((host, port)),
        )
        .await
        .map_err(|_| format!("resolving {host} timed out"))?
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
        let first = *addrs
            .first()
            .ok_or_else(|| format!("{host} has no address"))?;
        // every address must pass: a name that also resolves inside is refused outright
        if let Some(bad) = addrs.iter().find(|a| !self.allowed(a.ip(), allow_private)) {
            return Err(format!(
                "refused: {host} resolves to an internal address ({}); allowlist the connector or the network",
                bad.ip()
            ));
        }
        Ok(first)
    }
}

#[async_trait::async_trait]
impl HttpClient for GuardedClient {
    async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, String> {
        let mut url =
            reqwest::Url::parse(&req.url).map_err(|e| format!("refused: bad URL: {e}"))?;
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| "bad method".to_string())?;
        let deadline = tokio::time::Instant::now() + req.timeout;
        let first_host = url.host_str().map(str::to_string);
        for hop in 0..=MAX_REDIRECTS {
            // an allowlisted connector may reach its own host, not wherever it redirects
            let allow = req.allow_private && url.host_str().map(str::to_string) == first_host;
            let addr = self.check(&url, allow).await?;
            let host = url
                .host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let client = reqwest::Client::builder()
                // a proxy would resolve the name itself and undo the check
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(std::time::Duration::from_secs(10))
                .resolve(&host, addr)
                .user_agent(concat!("Firebreak/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("client: {e}"))?;
            // a redirect drops the body and becomes a GET (as browsers do for 301-303)
            let (m, body) = if hop == 0 {
                (method.clone(), req.body.clone())
            } else {
                (reqwest::Method::GET, None)
            };
            let mut rb = client.request(m, url.clone());
            for (k, v) in &req.headers {
                // after a redirect only the content headers go on: any other may be a credential
                if hop > 0 && !matches!(k.to_ascii_lowercase().as_str(), "accept" | "content-type")
                {
                    continue;
                }
                rb = rb.header(k, v);
            }
            if let Some(b) = body {
                rb = rb.body(b);
            }
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let mut res = tokio::time::timeout(remaining, rb.send())
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| format!("request failed: {}", e.without_url()))?;
            let status = res.status();
            if status.is_redirection() {
                let Some(loc) = res
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                else {
                    return Err(format!("HTTP {status} without a Location"));
                };
                url = url.join(loc).map_err(|e| format!("bad redirect: {e}"))?;
                continue;
            }
            let mut body = Vec::new();
            loop {
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                let chunk = tokio::time::timeout(remaining, res.chunk())
                    .await
                    .map_err(|_| "timed out reading the answer".to_string())?
                    .map_err(|e| format!("reading the answer: {}", e.without_url()))?;
                let Some(c) = chunk else { break };
                if body.len() + c.len() > req.max_bytes {
                    return Err(format!("the answer exceeds {} bytes", req.max_bytes));
                }
                body.extend_from_slice(&c);
            }
            return Ok(OutboundResponse {
                status: status.as_u16(),
                body,
            });
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn networks_contain_their_addresses() {
        let n: Network = "10.20.0.0/16".parse().unwrap();
        assert!(n.contains("10.20.3.4".parse().unwrap()));
        assert!(!n.contains("10.21.0.1".parse().unwrap()));
        let one: Network = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: Network = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Network>().is_err());
        assert!("nonsense".parse::<Network>().is_err());
    }

    #[tokio::test]
    async fn internal_targets_are_refused_after_resolution() {
        let c = GuardedClient::new(&OutboundConfig::default()).unwrap();
        for u in [
            "https://127.0.0.1/x",
            "https://localhost/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://10.0.0.1/",
            "https://100.64.0.1/",
        ] {
            let e = c
                .check(&reqwest::Url::parse(u).unwrap(), false)
                .await
                .unwrap_err();
            assert!(e.contains("refused"), "{u}: {e}");
        }
        let e = c
            .check(&reqwest::Url::parse("http://example.com/").unwrap(), false)
            .await
            .unwrap_err();
        assert!(e.contains("http://"), "{e}");
        let e = c
            .check(
                &reqwest::Url::parse("https://u:p@example.com/").unwrap(),
                false,
            )
            .await
            .unwrap_err();
        assert!(e.contains("credentials"), "{e}");
        // allowlisted: the connector's flag, or the network
        assert!(
            c.check(&reqwest::Url::parse("http://127.0.0.1:9/").unwrap(), true)
                .await
                .is_ok()
        );
        let c2 = GuardedClient::new(&OutboundConfig {
            allow_networks: vec!["127.0.0.0/8".into()],
        })
        .unwrap();
        assert!(
            c2.check(&reqwest::Url::parse("https://127.0.0.1:9/").unwrap(), false)
                .await
                .is_ok()
        );
    }
}
