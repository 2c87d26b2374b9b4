//! Signed outbound webhooks (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`), behind an outbound
//! guard: the target's name is resolved once and the connection pinned to an address that is
//! not loopback, private, link-local, CGNAT, multicast or otherwise reserved (unless
//! `allow_private_targets`), with no redirects, a time limit and a response size limit.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// `[webhooks]` in firebreak.toml.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `whsec_<base64>` (Standard Webhooks), shared with the receivers.
    pub secret: String,
    /// Allow targets on private and loopback addresses (a receiver on the same network).
    #[serde(default)]
    pub allow_private_targets: bool,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("secret", &"[redacted]")
            .field("allow_private_targets", &self.allow_private_targets)
            .finish()
    }
}

/// Addresses an outbound request may never reach unless explicitly allowed.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || s[0] == 0x2001 && s[1] == 0x0db8
                || s[0] == 0x64 && s[1] == 0xff9b
        }
    }
}

pub struct WebhookSender {
    key: Vec<u8>,
    allow_private: bool,
}

/// The Standard Webhooks signature of a delivery.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

impl WebhookSender {
    pub fn new(c: &WebhookConfig) -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        let raw = c.secret.strip_prefix("whsec_").unwrap_or(&c.secret);
        let key = STANDARD
            .decode(raw)
            .map_err(|_| anyhow::anyhow!("webhooks.secret must be whsec_ followed by base64"))?;
        anyhow::ensure!(
            key.len() >= 24,
            "webhooks.secret must hold at least 24 random bytes"
        );
        Ok(Self {
            key,
            allow_private: c.allow_private_targets,
        })
    }

    /// The address to connect to: resolved once, refused when internal and not allowed.
    async fn target(&self, url: &reqwest::Url) -> Result<SocketAddr, String> {
        let host = url.host_str().ok_or("refused: the URL has no host")?;
        let port = url.port_or_known_default().ok_or("refused: no port")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect();
        let first = *addrs
            .first()
            .ok_or_else(|| format!("{host} has no address"))?;
        if !self.allow_private && addrs.iter().any(|a| is_internal(a.ip())) {
            return Err(format!(
                "refused: {host} resolves to an internal address ({}); set webhooks.allow_private_targets to allow it",
                first.ip()
            ));
        }
        Ok(first)
    }
}

#[async_trait::async_trait]
impl firebreak_app::notify::WebhookSender for WebhookSender {
    async fn post(&self, id: &str, url: &str, body: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("refused: bad URL: {e}"))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err("refused: only http(s) targets".into());
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("refused: credentials in the URL".into());
        }
        let addr = self.target(&parsed).await?;
        let host = parsed.host_str().unwrap_or_default().to_string();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .resolve(&host, addr)
            .build()
            .map_err(|e| format!("client: {e}"))?;
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let res = client
            .post(parsed)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sign(&self.key, id, ts, body))
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("posting: {e}"))?;
        let status = res.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the endpoint answered {status}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(is_internal(ip), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            let ip: IpAddr = ip.parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
            assert!(!is_internal(ip), "{ip}");
        }
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // from the Standard Webhooks specification's test vector
        let key = STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_or_default();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
