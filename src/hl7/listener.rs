//! The MLLP listener (`ALERTCALL_HL7_LISTEN`): many connections, many messages on each, one
//! ACK per message in order, written only after the message's alarms are committed.
//!
//! Limits, as the HTTP server has them: a peer must be on the allow-list; at most
//! `max_connections` at once (a new one past the cap is closed); a message larger than
//! `max_message` is refused whole; a connection that sends nothing for `idle_timeout`, or
//! does not take its ACK within it, is closed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;

use super::mllp::{Frame, MllpCodec};
use super::oru::{self, AckCode, Refusal};
use super::{ack, intake};
use crate::engine::Engine;

/// `ALERTCALL_HL7_*`, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Peers allowed to connect (`ALERTCALL_HL7_ALLOW`); loopback only when not set.
    pub allow: Vec<IpNet>,
    pub max_message: usize,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// `ALERTCALL_HL7_TLS_CERT` and `_KEY`: MLLP over TLS when set.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Settings {
    /// For the start log and `alertcall check`: where, and who may connect.
    pub fn describe(&self, bound: SocketAddr) -> String {
        let peers = if self.allow.is_empty() {
            "this machine only".to_string()
        } else {
            self.allow
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let over = if self.tls.is_some() { " over TLS" } else { "" };
        format!("MLLP{over} on {bound}, peers: {peers}")
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.allow.is_empty() {
            ip.is_loopback()
        } else {
            self.allow.iter().any(|net| net.contains(&ip))
        }
    }
}

/// Serves MLLP on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    engine: Arc<Engine>,
    settings: Arc<Settings>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(settings.max_connections));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "an HL7 connection could not be accepted");
                    // A pause instead of a busy loop on an error that repeats (out of files).
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if !settings.allows(peer.ip()) {
            tracing::warn!(peer = %peer.ip(), "HL7 connection refused: peer not in ALERTCALL_HL7_ALLOW");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer.ip(), max = settings.max_connections, "HL7 connection refused: connection cap reached");
            continue;
        };
        let engine = engine.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            tracing::debug!(peer = %peer, "HL7 peer connected");
            let ended = match &settings.tls {
                None => connection(stream, peer.ip(), &engine, &settings).await,
                Some(tls) => {
                    let handshake = tokio_rustls::TlsAcceptor::from(tls.clone()).accept(stream);
                    match tokio::time::timeout(settings.idle_timeout, handshake).await {
                        Ok(Ok(stream)) => connection(stream, peer.ip(), &engine, &settings).await,
                        Ok(Err(e)) => {
                            tracing::warn!(peer = %peer.ip(), error = %e, "HL7 connection refused: its TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::warn!(peer = %peer.ip(), "HL7 connection closed: no TLS handshake within ALERTCALL_HL7_IDLE_TIMEOUT");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(peer = %peer, error = %e, "HL7 connection ended");
            }
            drop(slot);
        });
    }
}

/// Reads messages and answers each until the peer closes, goes quiet, or fails.
async fn connection(
    stream: impl AsyncRead + AsyncWrite + Unpin,
    peer: IpAddr,
    engine: &Arc<Engine>,
    settings: &Settings,
) -> std::io::Result<()> {
    let (read, mut write) = tokio::io::split(stream);
    let mut frames = FramedRead::new(read, MllpCodec::new(settings.max_message));
    loop {
        let frame = match tokio::time::timeout(settings.idle_timeout, frames.next()).await {
            Err(_) => {
                tracing::debug!(%peer, "HL7 connection idle: closed");
                return Ok(());
            }
            Ok(None) => return Ok(()),
            Ok(Some(frame)) => frame?,
        };
        let reply = answer(&frame, peer, engine, settings).await;
        tokio::time::timeout(
            settings.idle_timeout,
            write.write_all(&super::mllp::frame(reply.as_bytes())),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "ACK not taken"))??;
    }
}

/// The ACK for one frame, after its alarms are committed.
async fn answer(frame: &Frame, peer: IpAddr, engine: &Arc<Engine>, settings: &Settings) -> String {
    let our_id = uuid::Uuid::new_v4().simple().to_string();
    let now = engine.now();
    let (header, outcome) = match frame {
        Frame::Oversized(head) => {
            let read = oru::read(head);
            let refusal = Refusal {
                code: AckCode::Error,
                location: ("MSH".into(), 1, 0, 0),
                hl7_code: 207,
                text: format!(
                    "message larger than {} bytes (ALERTCALL_HL7_MAX_MESSAGE)",
                    settings.max_message
                ),
            };
            (read.header, Err(refusal))
        }
        Frame::Message(bytes) => {
            let read = oru::read(bytes);
            let outcome = match &read.report {
                Err(refusal) => Err(refusal.clone()),
                Ok(report) => intake::apply(engine, &read.header, report, peer)
                    .await
                    .map_err(|e| {
                        engine.store_failed(&e);
                        tracing::error!(error = %e, %peer, control_id = %read.header.control_id, "an HL7 alarm could not be stored; answered AE so the sender sends it again");
                        Refusal {
                            code: AckCode::Error,
                            location: ("MSH".into(), 1, 0, 0),
                            hl7_code: 207,
                            text: "the alarm could not be stored; send it again".into(),
                        }
                    }),
            };
            (read.header, outcome)
        }
    };
    match outcome {
        Ok(applied) => {
            engine.stored();
            tracing::info!(
                %peer,
                source = %header.source(),
                control_id = %header.control_id,
                created = applied.created.len(),
                updated = applied.updated.len(),
                ended = applied.ended.len(),
                duplicate = applied.duplicate,
                "HL7 alarm message taken"
            );
            intake::after_commit(engine, &applied).await;
            engine.metrics.hl7_message(AckCode::Accept.as_str());
            ack::render(&header, AckCode::Accept, None, &our_id, now)
        }
        Err(refusal) => {
            tracing::warn!(%peer, control_id = %header.control_id, ack = refusal.code.as_str(), problem = %refusal, "HL7 message refused");
            engine.metrics.hl7_message(refusal.code.as_str());
            ack::render(&header, refusal.code, Some(&refusal), &our_id, now)
        }
    }
}
