//! A minimal blocking HTTP/1.1 client with keep-alive, enough for tests and the benchmark
//! (no client library: it keeps the client's CPU cost far below the server's).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct Conn {
    addr: SocketAddr,
    reader: Option<BufReader<TcpStream>>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, reader: None }
    }

    fn stream(&mut self) -> std::io::Result<&mut BufReader<TcpStream>> {
        if self.reader.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            self.reader = Some(BufReader::new(s));
        }
        self.reader
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no connection"))
    }

    /// POSTs `body` as JSON and asserts 201 Created (with the body in the failure message).
    pub fn create(&mut self, path: &str, token: &str, body: &serde_json::Value) -> Response {
        let r = self
            .request("POST", path, Some(token), Some(body.to_string().as_bytes()))
            .unwrap();
        assert_eq!(
            r.status,
            201,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r
    }

    /// Asserts each acknowledged ticket (number, title) is stored: 200, with its title.
    pub fn assert_tickets_stored<N: std::fmt::Display, T: AsRef<str>>(
        &mut self,
        token: &str,
        tickets: impl IntoIterator<Item = (N, T)>,
    ) {
        for (number, title) in tickets {
            let r = self
                .request(
                    "GET",
                    &format!("/api/v1/tickets/{number}"),
                    Some(token),
                    None,
                )
                .unwrap();
            assert_eq!(r.status, 200, "acknowledged ticket {number} lost");
            assert_eq!(r.json()["title"], title.as_ref());
        }
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        let res = self.try_request(method, path, token, body);
        if res.is_err() {
            self.reader = None;
        }
        res
    }

    fn try_request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        let addr = self.addr;
        let r = self.stream()?;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
        if let Some(t) = token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        head.push_str("\r\n");
        let mut buf = head.into_bytes();
        if let Some(b) = body {
            buf.extend_from_slice(b);
        }
        r.get_mut().write_all(&buf)?;
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut len = 0usize;
        let mut chunked = false;
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.trim().eq_ignore_ascii_case("chunked")
                {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim(), 16).map_err(std::io::Error::other)?;
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            body.resize(len, 0);
            r.read_exact(&mut body)?;
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}
