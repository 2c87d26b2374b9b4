//! Per-address limit on unauthenticated requests (no or bad credentials): beyond it, 429 with
//! `Retry-After`. Per node and in memory (sign-in failures are counted in the database instead,
//! shared by every node); authenticated traffic is never limited here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most; beyond it, expired windows are swept and, if still full, the
/// table starts over (memory stays bounded under a spray of addresses).
const MAX_TRACKED: usize = 100_000;

pub struct AddrLimiter {
    max: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl std::fmt::Debug for AddrLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddrLimiter")
            .field("max", &self.max)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Default for AddrLimiter {
    /// 60 unauthenticated requests per minute per address.
    fn default() -> Self {
        Self::new(60, Duration::from_secs(60))
    }
}

impl AddrLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        Self {
            max,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one unauthenticated request from `ip`; `Err(seconds)` when over the limit.
    pub fn hit(&self, ip: IpAddr) -> Result<(), u32> {
        // one IPv6 subscriber holds a whole /64
        let ip = match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        };
        let now = Instant::now();
        let mut seen = match self.seen.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if seen.len() >= MAX_TRACKED && !seen.contains_key(&ip) {
            let window = self.window;
            seen.retain(|_, (start, _)| now.duration_since(*start) < window);
            if seen.len() >= MAX_TRACKED {
                seen.clear();
            }
        }
        let entry = seen.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 > self.max {
            let left = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(u32::try_from(left.as_secs().max(1)).unwrap_or(u32::MAX));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address_and_window() {
        let l = AddrLimiter::new(3, Duration::from_millis(200));
        let a: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        assert!(l.hit(a).is_ok() && l.hit(a).is_ok() && l.hit(a).is_ok());
        assert!(l.hit(a).is_err());
        assert!(l.hit(b).is_ok());
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.hit(a).is_ok());
    }
}
