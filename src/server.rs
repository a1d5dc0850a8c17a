//! Accepting HTTP connections with limits, so that idle or slow clients cannot keep webhooks
//! from being answered:
//!
//! - hyper's header-read timeout: a client must send a whole request head within
//!   `header_read_timeout`, on a new connection and again between requests on a kept-alive
//!   one (hyper times every head it waits for), so idle and half-sent connections close;
//! - at most `max_connections` open, below the process's file limit (raised to its hard limit
//!   at start) so that calls and the database always have descriptors left; when a new
//!   connection would pass the cap, the oldest one with no request in flight is closed to
//!   make room, so that a webhook arriving behind a crowd of idle sockets is served at once
//!   instead of queueing for a free slot;
//! - accept errors logged (at most one line per interval), never looped on silently.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt;

/// Descriptors kept free of client connections: database connections, calls to the
/// provider, log and database files.
const RESERVED_FILES: u64 = 256;
/// However low the file limit, this many connections are still served.
const MIN_CONNECTIONS: usize = 16;
/// At most one log line per this interval for each kind of trouble.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The connection limits in force.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    /// `max_connections`, lowered to what the file limit `files` leaves after the reserve.
    pub fn new(header_read_timeout: Duration, max_connections: usize, files: u64) -> Limits {
        let fit = usize::try_from(files.saturating_sub(RESERVED_FILES)).unwrap_or(usize::MAX);
        Limits {
            header_read_timeout,
            max_connections: max_connections.min(fit).max(MIN_CONNECTIONS),
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit (systemd's default soft
/// limit is 1,024) and returns the soft limit now in force.
pub fn raise_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves, then lets the
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let open = Arc::new(Open::default());
    let graceful = GracefulShutdown::new();
    let mut accept_errors = Throttle::default();
    let mut crowded = Throttle::default();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    let out_of_files =
                        matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    if let Some(more) = accept_errors.due() {
                        if out_of_files {
                            tracing::error!(error = %e, repeated = more, "cannot accept connections: out of open files");
                        } else {
                            tracing::warn!(error = %e, repeated = more, "a connection could not be accepted");
                        }
                    }
                    if out_of_files {
                        // An idle connection gives a descriptor back.
                        open.close_oldest_idle();
                    }
                    // A pause instead of a busy loop on an error that repeats.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = open.add();
        if open.len() > limits.max_connections {
            let made_room = open.close_oldest_idle();
            if let Some(more) = crowded.due() {
                tracing::warn!(
                    max = limits.max_connections,
                    repeated = more,
                    "connection cap reached: {}",
                    if made_room {
                        "closing idle connections to make room"
                    } else {
                        "every connection is busy; refusing new ones"
                    }
                );
            }
            if !made_room {
                open.remove(conn.id);
                continue;
            }
        }
        let service = {
            let conn = conn.clone();
            let router = router.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                let busy = Busy::new(&conn);
                // Who asked: the simulator's local rule and the sign-in lockout read it.
                request.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                async move {
                    let response = router.oneshot(request.map(Body::new)).await;
                    drop(busy);
                    response
                }
            })
        };
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        let open = open.clone();
        tokio::spawn(async move {
            tokio::select! {
                // Closed by the client, by the header-read timeout, or after an error the
                // client caused: nothing worth a log line.
                _ = connection => {}
                () = conn.close.notified() => {}
            }
            open.remove(conn.id);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The open connections, oldest first.
#[derive(Default)]
struct Open {
    connections: Mutex<(u64, BTreeMap<u64, Arc<Conn>>)>,
}

struct Conn {
    id: u64,
    /// Requests being answered on this connection.
    in_flight: AtomicUsize,
    close: Notify,
}

impl Open {
    fn add(&self) -> Arc<Conn> {
        let mut guard = self.connections.lock().expect("connections lock");
        let (next, connections) = &mut *guard;
        *next += 1;
        let conn = Arc::new(Conn {
            id: *next,
            in_flight: AtomicUsize::new(0),
            close: Notify::new(),
        });
        connections.insert(conn.id, conn.clone());
        conn
    }

    fn len(&self) -> usize {
        self.connections.lock().expect("connections lock").1.len()
    }

    fn remove(&self, id: u64) {
        self.connections
            .lock()
            .expect("connections lock")
            .1
            .remove(&id);
    }

    /// Closes the oldest connection with no request in flight (idle, or still sending its
    /// request head); `false` when every one is busy.
    fn close_oldest_idle(&self) -> bool {
        let mut guard = self.connections.lock().expect("connections lock");
        let connections = &mut guard.1;
        let Some(id) = connections
            .values()
            .find(|c| c.in_flight.load(Ordering::SeqCst) == 0)
            .map(|c| c.id)
        else {
            return false;
        };
        if let Some(conn) = connections.remove(&id) {
            // Stored if the connection's task is not waiting yet: it closes when it does.
            conn.close.notify_one();
        }
        true
    }
}

/// A request in flight on a connection, for as long as its handler runs (a response body
/// still streaming, such as the dashboard's event stream, no longer counts: at the cap such a
/// connection may be closed, and the browser reconnects).
struct Busy(Arc<Conn>);

impl Busy {
    fn new(conn: &Arc<Conn>) -> Busy {
        conn.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(conn.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Lets a repeated log line through at most once per `LOG_INTERVAL`, saying how many were
/// held back.
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    /// `Some(lines held back since the last one)` when a line is due.
    fn due(&mut self) -> Option<u64> {
        if self.last.is_some_and(|t| t.elapsed() < LOG_INTERVAL) {
            self.held += 1;
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_calls_and_the_database() {
        let t = Duration::from_secs(10);
        assert_eq!(Limits::new(t, 4096, 1024).max_connections, 768);
        assert_eq!(Limits::new(t, 4096, 1_048_576).max_connections, 4096);
        assert_eq!(Limits::new(t, 4096, 100).max_connections, MIN_CONNECTIONS);
    }

    #[test]
    fn the_oldest_idle_connection_makes_room() {
        let open = Open::default();
        let (first, second, third) = (open.add(), open.add(), open.add());
        let busy = Busy::new(&first);
        assert!(open.close_oldest_idle());
        assert_eq!(open.len(), 2);
        let left: Vec<u64> = open.connections.lock().unwrap().1.keys().copied().collect();
        assert_eq!(left, vec![first.id, third.id], "the busy one stays");
        let _ = second;
        open.remove(third.id);
        assert!(!open.close_oldest_idle(), "only a busy one is left");
        drop(busy);
        assert!(open.close_oldest_idle());
    }

    #[test]
    fn repeated_lines_are_held_back() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.due(), Some(0));
        assert_eq!(throttle.due(), None);
        assert_eq!(throttle.due(), None);
        throttle.last = Some(Instant::now() - LOG_INTERVAL);
        assert_eq!(throttle.due(), Some(2));
    }
}
