//! A TCP relay on a stable port that can be switched to "connection refused".

use super::*;

// ---------------------------------------------------------------------------------------------
// Front: a TCP relay on a stable port that can be switched to "connection refused".

struct FrontState {
    accept: Option<JoinHandle<()>>,
    conns: Vec<JoinHandle<()>>,
}

/// A port in front of a `FakeUpstream`. While refused, nothing listens on the port and every
/// relayed connection has been cut, so keyway sees `ECONNREFUSED` (not a 503). A bound socket
/// that never listens holds the port meanwhile (`SO_REUSEPORT`), so no other test's ephemeral
/// port can take it before the fake comes back on the same address.
pub struct Front {
    pub port: u16,
    backend: u16,
    _reserved: TcpSocket,
    state: Arc<Mutex<FrontState>>,
}

fn shared_socket(port: u16) -> TcpSocket {
    let s = TcpSocket::new_v4().unwrap();
    s.set_reuseaddr(true).unwrap();
    s.set_reuseport(true).unwrap();
    s.bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .unwrap_or_else(|e| panic!("binding 127.0.0.1:{port}: {e}"));
    s
}

impl Front {
    /// Needs a tokio runtime.
    pub fn start(backend: u16) -> Front {
        let reserved = shared_socket(0);
        let port = reserved.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(FrontState {
            accept: None,
            conns: Vec::new(),
        }));
        let f = Front {
            port,
            backend,
            _reserved: reserved,
            state,
        };
        f.listen();
        f
    }

    fn listen(&self) {
        let listener = shared_socket(self.port).listen(1024).unwrap();
        let (backend, st) = (self.backend, self.state.clone());
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(out) = TcpStream::connect(("127.0.0.1", backend)).await {
                        relay_both(&inbound, &out).await;
                    }
                });
                let mut s = st.lock().unwrap();
                s.conns.retain(|h| !h.is_finished());
                s.conns.push(relay);
            }
        });
        self.state.lock().unwrap().accept = Some(task);
    }

    /// Refuses (`true`) or accepts again on the same port (`false`). Returns once the port is
    /// really closed (or open), so the caller's next step sees the change.
    pub async fn set_refused(&self, refused: bool) {
        if refused {
            let (accept, conns) = {
                let mut s = self.state.lock().unwrap();
                (s.accept.take(), std::mem::take(&mut s.conns))
            };
            for task in accept.into_iter().chain(conns) {
                task.abort();
                let _ = task.await;
            }
        } else if self.state.lock().unwrap().accept.is_none() {
            self.listen();
        }
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let mut s = self.state.lock().unwrap();
        if let Some(a) = s.accept.take() {
            a.abort();
        }
        for c in s.conns.drain(..) {
            c.abort();
        }
    }
}

/// Copies both ways until either side closes.
async fn relay_both(a: &TcpStream, b: &TcpStream) {
    tokio::select! {
        _ = pump(a, b) => {}
        _ = pump(b, a) => {}
    }
}

async fn pump(from: &TcpStream, to: &TcpStream) {
    use std::io::ErrorKind::WouldBlock;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == WouldBlock => continue,
            Err(_) => return,
        };
        let mut sent = 0;
        while sent < n {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buf[sent..n]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == WouldBlock => continue,
                Err(_) => return,
            }
        }
    }
}
