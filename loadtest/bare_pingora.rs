//! The load test's baseline: the least a Pingora 0.9 proxy can do for keyway's job. Every
//! request goes to one fixed upstream address and gets one header inserted (the credential);
//! nothing is parsed, looked up or counted. keyway's figures are reported against this one, run
//! in the same rounds, so the ratio is keyway's own cost over Pingora's.
//!
//! ```text
//! bare-pingora --listen 127.0.0.1:8080 --upstream 127.0.0.1:9000 \
//!     --header 'authorization: Bearer sk-…' [--threads 1]
//! ```
//!
//! Built with keyway's own Pingora (`cargo build --profile dist --example bare-pingora`), so
//! both run the same Pingora, compiled the same way.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::Result;

struct Bare {
    upstream: SocketAddr,
    name: http::HeaderName,
    value: http::HeaderValue,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        req: &mut RequestHeader,
        _ctx: &mut (),
    ) -> Result<()> {
        req.insert_header(self.name.clone(), self.value.clone())
    }
}

struct Args {
    listen: String,
    upstream: SocketAddr,
    header: (http::HeaderName, http::HeaderValue),
    threads: usize,
}

fn parse_args() -> std::result::Result<Args, String> {
    let (mut listen, mut upstream, mut header, mut threads) = (None, None, None, 1);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => listen = Some(value),
            "--upstream" => {
                upstream = Some(value.parse().map_err(|e| format!("--upstream: {e}"))?);
            }
            "--header" => {
                let (n, v) = value
                    .split_once(':')
                    .ok_or("--header wants 'name: value'")?;
                let name = n.trim().parse().map_err(|e| format!("--header: {e}"))?;
                let value = v.trim().parse().map_err(|e| format!("--header: {e}"))?;
                header = Some((name, value));
            }
            "--threads" => threads = value.parse().map_err(|e| format!("--threads: {e}"))?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        upstream: upstream.ok_or("--upstream is required")?,
        header: header.ok_or("--header is required")?,
        threads,
    })
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bare-pingora: {e}");
            std::process::exit(2);
        }
    };
    let conf = ServerConf {
        threads: args.threads,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let bare = Bare {
        upstream: args.upstream,
        name: args.header.0,
        value: args.header.1,
    };
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, bare);
    proxy.add_tcp(&args.listen);
    server.add_service(proxy);
    server.run_forever();
}
