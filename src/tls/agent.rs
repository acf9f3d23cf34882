//! The agent's TLS, loaded once at startup: every file of every interface
//! is read and checked before anything is bound, as Consul's
//! `tlsutil.NewConfigurator` does, so a bad path stops the agent with an
//! error naming it instead of failing the first handshake.

use super::files::{self, KeyPair};
use super::{incoming, outgoing, TlsError};
use crate::config::{Config, TlsInterface};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;

/// One interface's files, read and checked against Consul's rules.
struct Loaded {
    settings: TlsInterface,
    cert: Option<KeyPair>,
    roots: Option<Arc<RootCertStore>>,
}

impl Loaded {
    fn read(settings: TlsInterface) -> Result<Loaded, TlsError> {
        let cert = match (&settings.cert_file, &settings.key_file) {
            (Some(c), Some(k)) => Some(files::key_pair(c, k)?),
            _ => None,
        };
        let roots =
            files::cas(settings.ca_file.as_deref(), settings.ca_path.as_deref())?.map(Arc::new);
        if settings.verify_incoming {
            if roots.is_none() {
                return Err(TlsError::IncomingWithoutCa);
            }
            if cert.is_none() {
                return Err(TlsError::IncomingWithoutCert);
            }
        }
        if settings.verify_outgoing && roots.is_none() {
            return Err(TlsError::OutgoingWithoutCa);
        }
        Ok(Loaded {
            settings,
            cert,
            roots,
        })
    }

    fn server_config(&self, alpn: &[&[u8]]) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        self.cert
            .as_ref()
            .map(|cert| incoming::server_config(&self.settings, cert, self.roots.as_ref(), alpn))
            .transpose()
    }
}

/// The RPC port's TLS, both ways.
#[derive(Clone, Default)]
pub struct RpcTls {
    /// Serves `RPCTLS` connections; `None` without a certificate.
    pub incoming: Option<Arc<ServerConfig>>,
    /// `verify_incoming`: plain connections are refused and TLS ones must
    /// present a certificate signed by the CA.
    pub verify_incoming: bool,
    /// With `verify_incoming` and `verify_server_hostname`: the name a raft
    /// peer's certificate must carry (Consul's `AuthorizeServerConn`).
    pub raft_peer_name: Option<ServerName<'static>>,
    /// `verify_outgoing`: every dial to a server is TLS with this config.
    pub outgoing: Option<Arc<ClientConfig>>,
    /// With `verify_server_hostname`: the name a dialled server's
    /// certificate must carry.
    pub server_name: Option<ServerName<'static>>,
}

/// What the agent serves and dials with.
#[derive(Clone, Default)]
pub struct AgentTls {
    /// The HTTPS API's config, when an HTTPS certificate is configured.
    pub https: Option<Arc<ServerConfig>>,
    pub rpc: RpcTls,
}

impl AgentTls {
    /// Reads and checks every file `config.tls` names.
    pub fn load(config: &Config) -> Result<AgentTls, TlsError> {
        let https = Loaded::read(config.tls.https())?;
        let rpc = Loaded::read(config.tls.internal_rpc())?;
        if config.ports.https >= 0 && https.cert.is_none() {
            return Err(TlsError::HttpsWithoutCert {
                port: config.ports.https,
            });
        }
        let name = outgoing::server_name(&config.datacenter, &config.domain)?;
        let outgoing = match (&rpc.roots, rpc.settings.verify_outgoing) {
            (Some(roots), true) => Some(outgoing::rpc_client_config(
                &rpc.settings,
                rpc.cert.as_ref(),
                roots,
            )?),
            _ => None,
        };
        let verify_hostname = rpc.settings.verify_server_hostname;
        Ok(AgentTls {
            https: https.server_config(&incoming::HTTPS_ALPN)?,
            rpc: RpcTls {
                incoming: rpc.server_config(&[])?,
                verify_incoming: rpc.settings.verify_incoming,
                raft_peer_name: (rpc.settings.verify_incoming && verify_hostname)
                    .then(|| name.clone()),
                outgoing,
                server_name: verify_hostname.then_some(name),
            },
        })
    }
}
