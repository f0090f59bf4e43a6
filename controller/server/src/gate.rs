//! The MQTT TLS gate: mutual TLS and the per-device ACL in front of the embedded broker.
//!
//! rumqttd has no per-topic access control (ADR 0001), so devices never reach it directly
//! when TLS is on: they connect here. The gate requires a client certificate signed by the
//! device CA, takes the device id from its common name, refuses revoked certificates, then
//! relays the MQTT stream to the broker on loopback while checking every CONNECT (client id,
//! last will), PUBLISH and SUBSCRIBE of the client against [`gavel_protocol::acl`]. A
//! violation closes the connection and is logged with what was tried. Revoking a
//! certificate closes its live connections at once.
//!
//! The broker-to-client direction is relayed unchanged: a device only receives what its
//! (checked) subscriptions match.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use gavel_protocol::DeviceId;
use gavel_protocol::acl::{self, CONTROLLER_IDENTITY};
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

/// The serial numbers (lowercase hex) of revoked certificates, shared with the API that
/// revokes them. Changing it closes live connections of newly revoked certificates.
#[derive(Clone, Debug)]
pub struct Revocations(Arc<watch::Sender<HashSet<String>>>);

impl Default for Revocations {
    fn default() -> Self {
        Self(Arc::new(watch::channel(HashSet::new()).0))
    }
}

impl Revocations {
    /// Starts from `serials`.
    pub fn new(serials: impl IntoIterator<Item = String>) -> Self {
        let this = Self::default();
        this.0.send_modify(|set| set.extend(serials));
        this
    }

    /// Adds revoked serials.
    pub fn revoke(&self, serials: impl IntoIterator<Item = String>) {
        self.0.send_modify(|set| set.extend(serials));
    }

    /// Is `serial` revoked?
    pub fn is_revoked(&self, serial: &str) -> bool {
        self.0.borrow().contains(serial)
    }

    fn watch(&self) -> watch::Receiver<HashSet<String>> {
        self.0.subscribe()
    }
}

/// What the gate needs.
pub struct GateConfig {
    /// CA certificate (PEM) that device certificates must chain to.
    pub ca_pem: String,
    /// The gate's server certificate and key (PEM).
    pub cert_pem: String,
    pub key_pem: String,
    /// The broker behind the gate (loopback).
    pub upstream: SocketAddr,
    /// Largest MQTT packet accepted from a client.
    pub max_packet_bytes: usize,
    pub revocations: Revocations,
}

/// Builds the TLS server configuration: client certificates required, chained to the CA.
pub fn server_tls(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.context("reading the CA certificate")?)
            .context("adding the CA certificate")?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the client certificate verifier")?;
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading the gate certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("reading the gate key")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("gate certificate and key")?;
    Ok(Arc::new(config))
}

/// Serves the gate on `listener` until `shutdown` fires.
pub async fn run(
    listener: TcpListener,
    config: GateConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let tls = server_tls(&config.ca_pem, &config.cert_pem, &config.key_pem)?;
    let acceptor = TlsAcceptor::from(tls);
    let shared = Arc::new(config);
    info!(listen = %listener.local_addr()?, upstream = %shared.upstream, "MQTT TLS gate listening");
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "gate accept failed");
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(reason) = serve(acceptor, stream, peer, &shared).await {
                        warn!(%peer, %reason, "MQTT gate refused or closed a connection");
                    }
                });
            }
        }
    }
}

/// Who is on the other end, from the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Peer {
    Controller,
    Device(DeviceId),
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Controller => f.write_str(CONTROLLER_IDENTITY),
            Peer::Device(d) => write!(f, "device {d}"),
        }
    }
}

async fn serve(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer_addr: SocketAddr,
    config: &GateConfig,
) -> Result<(), String> {
    let tls = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let (_, session) = tls.get_ref();
    let cert = session
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no client certificate")?;
    let identity =
        gavel_identity::ca::cert_identity(cert).map_err(|e| format!("client certificate: {e}"))?;
    let peer = if identity.common_name == CONTROLLER_IDENTITY {
        Peer::Controller
    } else {
        Peer::Device(DeviceId::new(&identity.common_name).map_err(|e| {
            format!(
                "client certificate names {:?}, not a device id: {e}",
                identity.common_name
            )
        })?)
    };
    let (mut client_rd, mut client_wr) = tokio::io::split(tls);
    let mut buf = BytesMut::with_capacity(4096);
    let connect = read_frame(&mut client_rd, &mut buf, config.max_packet_bytes)
        .await?
        .ok_or("closed before CONNECT")?;
    let Packet::Connect(c) = parse(&connect, config.max_packet_bytes)? else {
        return Err(format!("{peer}: first packet is not CONNECT"));
    };
    if config.revocations.is_revoked(&identity.serial) {
        refuse(&mut client_wr, ConnectReturnCode::NotAuthorized).await;
        return Err(format!(
            "{peer}: certificate {} is revoked",
            identity.serial
        ));
    }
    if let Peer::Device(device) = &peer {
        if c.client_id != device.as_str() {
            refuse(&mut client_wr, ConnectReturnCode::BadClientId).await;
            return Err(format!(
                "{peer}: client id {:?} is not the certificate's device id",
                c.client_id
            ));
        }
        if let Some(will) = &c.last_will
            && let Err(e) = acl::device_may_publish(device, &will.topic)
        {
            refuse(&mut client_wr, ConnectReturnCode::NotAuthorized).await;
            return Err(format!("last will: {e}"));
        }
    }
    let upstream = TcpStream::connect(config.upstream)
        .await
        .map_err(|e| format!("broker {} unreachable: {e}", config.upstream))?;
    let _ = upstream.set_nodelay(true);
    let (mut up_rd, mut up_wr) = upstream.into_split();
    up_wr
        .write_all(&connect)
        .await
        .map_err(|e| format!("writing CONNECT upstream: {e}"))?;
    debug!(%peer_addr, %peer, "gate relaying");

    let mut revoked = config.revocations.watch();
    let serial = identity.serial.clone();
    let downstream = async move {
        let _ = tokio::io::copy(&mut up_rd, &mut client_wr).await;
        let _ = client_wr.shutdown().await;
    };
    let upstream_dir = async {
        loop {
            tokio::select! {
                changed = revoked.changed() => {
                    if changed.is_err() || revoked.borrow().contains(&serial) {
                        return Err(format!("{peer}: certificate {serial} revoked, connection closed"));
                    }
                }
                frame = read_frame(&mut client_rd, &mut buf, config.max_packet_bytes) => {
                    let Some(frame) = frame? else { return Ok(()) };
                    if let Peer::Device(device) = &peer {
                        check(device, &parse(&frame, config.max_packet_bytes)?)?;
                    }
                    up_wr
                        .write_all(&frame)
                        .await
                        .map_err(|e| format!("broker write failed: {e}"))?;
                }
            }
        }
    };
    // Whichever direction ends first ends the connection.
    tokio::select! {
        result = upstream_dir => result,
        () = downstream => Ok(()),
    }
}

/// Answers a refused CONNECT with its return code and closes.
async fn refuse<W: AsyncWrite + Unpin>(wr: &mut W, code: ConnectReturnCode) {
    let mut out = BytesMut::new();
    if ConnAck::new(code, false).write(&mut out).is_ok() {
        let _ = wr.write_all(&out).await;
        let _ = wr.shutdown().await;
    }
}

/// Checks one packet from a device against the ACL.
fn check(device: &DeviceId, packet: &Packet) -> Result<(), String> {
    match packet {
        Packet::Publish(p) => {
            acl::device_may_publish(device, &p.topic).map_err(|e| format!("PUBLISH refused: {e}"))
        }
        Packet::Subscribe(s) => s.filters.iter().try_for_each(|f| {
            acl::device_may_subscribe(device, &f.path)
                .map_err(|e| format!("SUBSCRIBE refused: {e}"))
        }),
        Packet::Connect(_) => Err(format!("device {device} sent a second CONNECT")),
        _ => Ok(()),
    }
}

fn parse(frame: &BytesMut, max: usize) -> Result<Packet, String> {
    let mut copy = frame.clone();
    Packet::read(&mut copy, max).map_err(|e| format!("malformed MQTT packet: {e:?}"))
}

/// Reads one whole MQTT frame (fixed header + rest) into a buffer of its own; `None` at a
/// clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<BytesMut>, String> {
    loop {
        match rumqttc::mqttbytes::check(buf.iter(), max) {
            Ok(header) => return Ok(Some(buf.split_to(header.frame_length()))),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => return Err(format!("malformed MQTT stream: {e:?}")),
        }
        let n = rd
            .read_buf(buf)
            .await
            .map_err(|e| format!("read failed: {e}"))?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err("connection closed inside a packet".into())
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::mqttbytes::QoS;
    use rumqttc::mqttbytes::v4::{Publish, Subscribe, SubscribeFilter};

    fn dev(id: &str) -> DeviceId {
        DeviceId::new(id).expect("valid id")
    }

    #[test]
    fn a_device_publishing_under_another_prefix_is_refused_naming_both() {
        let p = Packet::Publish(Publish::new(
            "gavel/v1/dev/cam-b/event",
            QoS::AtLeastOnce,
            "{}",
        ));
        let err = check(&dev("cam-a"), &p).expect_err("refused");
        assert!(err.contains("cam-a") && err.contains("cam-b"), "{err}");
        let own = Packet::Publish(Publish::new(
            "gavel/v1/dev/cam-a/event",
            QoS::AtLeastOnce,
            "{}",
        ));
        check(&dev("cam-a"), &own).expect("own topic");
    }

    #[test]
    fn one_bad_filter_refuses_the_whole_subscribe() {
        let s = Packet::Subscribe(Subscribe::new_many([
            SubscribeFilter::new("gavel/v1/dev/cam-a/cmd".into(), QoS::AtLeastOnce),
            SubscribeFilter::new("gavel/v1/dev/cam-b/cmd".into(), QoS::AtLeastOnce),
        ]));
        assert!(check(&dev("cam-a"), &s).is_err());
    }

    #[tokio::test]
    async fn frames_are_cut_at_packet_boundaries_and_garbage_is_named() {
        let mut wire = BytesMut::new();
        Packet::PingReq.write(&mut wire, 1024).expect("write");
        Publish::new("gavel/v1/dev/cam-a/event", QoS::AtMostOnce, "x")
            .write(&mut wire)
            .expect("write");
        let bytes = wire.to_vec();
        let mut rd = &bytes[..];
        let mut buf = BytesMut::new();
        let first = read_frame(&mut rd, &mut buf, 1024)
            .await
            .expect("ok")
            .expect("frame");
        assert!(matches!(parse(&first, 1024), Ok(Packet::PingReq)));
        let second = read_frame(&mut rd, &mut buf, 1024)
            .await
            .expect("ok")
            .expect("frame");
        assert!(matches!(parse(&second, 1024), Ok(Packet::Publish(_))));
        assert!(
            read_frame(&mut rd, &mut buf, 1024)
                .await
                .expect("ok")
                .is_none()
        );
        let garbage = [0xffu8, 0xff, 0xff, 0xff, 0xff, 0x01];
        let mut rd = &garbage[..];
        let err = read_frame(&mut rd, &mut BytesMut::new(), 1024)
            .await
            .expect_err("garbage");
        assert!(err.contains("malformed"), "{err}");
    }
}
