//! Authentication and TLS: SCRAM-SHA-256 (PostgreSQL's default; the salted verifier is
//! computed once at start, as PostgreSQL stores one, with a decoy for unknown users), MD5 or
//! clear text against the one configured user; `trust` only with an empty `PGWIRE_PASSWORD`
//! and `PGWIRE_INSECURE_NO_PASSWORD`. Each connection gets a fresh start-up handler (the
//! exchange's state must not be shared) and a process id and secret key from one shared
//! generator, which cancel requests are matched by. TLS is rustls (ring) for `sslmode=require`
//! clients, with SCRAM channel binding; a certificate that cannot be loaded stops the server.
//! Tests: `tests/e2e/security.rs`.

use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::auth::cleartext::CleartextPasswordAuthStartupHandler;
use pgwire::api::auth::md5pass::{Md5PasswordAuthStartupHandler, hash_md5_password};
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{
    ClientInfo, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use crate::config::AuthMethod;
use crate::error::SqlState;
use crate::pgwire::cancel;

/// SCRAM iterations of the stored verifier (PostgreSQL's default).
pub(crate) const SCRAM_ITERATIONS: usize = 4096;

/// The one configured user and what its password is checked against.
#[derive(Debug)]
pub(crate) struct PasswordAuth {
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) method: AuthMethod,
    /// SCRAM: the salt and salted password, computed once at start-up (as PostgreSQL stores a
    /// verifier), and a decoy for unknown users.
    pub(crate) scram: (Vec<u8>, Vec<u8>),
    pub(crate) decoy: (Vec<u8>, Vec<u8>),
}

impl PasswordAuth {
    pub(crate) fn new(user: String, password: String, method: AuthMethod) -> Self {
        let salted = |secret: &str| {
            let salt = uuid::Uuid::new_v4().as_bytes().to_vec();
            let hash = gen_salted_password(secret, &salt, SCRAM_ITERATIONS);
            (salt, hash)
        };
        let (scram, decoy) = if method == AuthMethod::ScramSha256 {
            (salted(&password), salted(&uuid::Uuid::new_v4().to_string()))
        } else {
            Default::default()
        };
        PasswordAuth {
            user,
            password,
            method,
            scram,
            decoy,
        }
    }
}

#[async_trait]
impl AuthSource for PasswordAuth {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let user = login.user().unwrap_or_default();
        let known = user == self.user;
        // An unknown user gets a secret no password matches, so the answer does not reveal
        // whether the user exists.
        let secret = if known {
            self.password.clone()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        Ok(match self.method {
            AuthMethod::ScramSha256 => {
                let (salt, hash) = if known { &self.scram } else { &self.decoy };
                Password::new(Some(salt.clone()), hash.clone())
            }
            AuthMethod::Md5 => {
                let salt = uuid::Uuid::new_v4().as_bytes()[..4].to_vec();
                let hash = hash_md5_password(user, &secret, &salt);
                Password::new(Some(salt), hash.into_bytes())
            }
            AuthMethod::Password => Password::new(None, secret.into_bytes()),
        })
    }
}

/// [`PasswordAuth`] shared between connections, for handlers that take their source by value.
#[derive(Debug)]
pub(crate) struct SharedAuth(pub(crate) Arc<PasswordAuth>);

#[async_trait]
impl AuthSource for SharedAuth {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        self.0.get_password(login).await
    }
}

/// The start-up (authentication) handler of one connection, for the configured method; once
/// it has let the client in, the connection is registered for cancel requests.
pub(crate) struct Startup {
    pub(crate) method: StartupMethod,
    pub(crate) interrupts: Arc<cancel::Registry>,
}

pub(crate) enum StartupMethod {
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
    Md5(Md5PasswordAuthStartupHandler<PasswordAuth, DefaultServerParameterProvider>),
    Password(CleartextPasswordAuthStartupHandler<SharedAuth, DefaultServerParameterProvider>),
    /// No password (PostgreSQL's `trust`), only with `PGWIRE_INSECURE_NO_PASSWORD`.
    Trust(Trust),
}

/// Lets the configured user in without a password.
pub(crate) struct Trust {
    pub(crate) user: String,
    pub(crate) parameters: Arc<DefaultServerParameterProvider>,
    pub(crate) pids: Arc<RandomPidSecretKeyGenerator>,
}

impl Trust {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        use pgwire::api::auth::{
            finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
        };
        let pgwire::messages::PgWireFrontendMessage::Startup(startup) = message else {
            return Ok(());
        };
        protocol_negotiation(client, &startup).await?;
        save_startup_parameters_to_metadata(client, &startup);
        let user = LoginInfo::from_client_info(client)
            .user()
            .unwrap_or_default()
            .to_string();
        if user != self.user {
            return Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                SqlState::INVALID_AUTHORIZATION_SPECIFICATION.code().into(),
                format!("role \"{user}\" does not exist"),
            ))));
        }
        let (pid, secret) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret);
        finish_authentication(client, self.parameters.as_ref()).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + futures::Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        match &self.method {
            StartupMethod::Scram(h) => h.on_startup(client, message).await?,
            StartupMethod::Md5(h) => h.on_startup(client, message).await?,
            StartupMethod::Password(h) => h.on_startup(client, message).await?,
            StartupMethod::Trust(h) => h.on_startup(client, message).await?,
        }
        if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            self.interrupts.register(client);
        }
        Ok(())
    }
}

/// TLS for the Postgres port from a PEM certificate chain and private key. Any failure is an
/// error: the server never falls back to plaintext when TLS was asked for.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> Result<Tls, String> {
    use pgwire::tokio::tokio_rustls::rustls::ServerConfig;
    use pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
    use pgwire::tokio::tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = std::fs::read(cert)
        .map_err(|e| format!("cannot read TIMEFUSION_TLS_CERT {}: {e}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TIMEFUSION_TLS_CERT {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TIMEFUSION_TLS_CERT {} holds no PEM certificate",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("TIMEFUSION_TLS_KEY {}: {e}", key.display()))?;
    // The ring provider explicitly: several crypto providers are linked in, so rustls cannot
    // pick a process default by itself.
    let provider = Arc::new(pgwire::tokio::tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| format!("TLS certificate and key do not work together: {e}"))?;
    Ok(Tls {
        acceptor: pgwire::tokio::TlsAcceptor::from(Arc::new(config)),
        cert_pem: pem,
    })
}

/// The TLS set-up of the Postgres port.
#[derive(Clone)]
pub struct Tls {
    pub(crate) acceptor: pgwire::tokio::TlsAcceptor,
    /// For SCRAM channel binding (`SCRAM-SHA-256-PLUS`).
    pub(crate) cert_pem: Vec<u8>,
}

impl PasswordAuth {
    /// A fresh start-up handler for one connection: the handlers keep the exchange's state
    /// (MD5 salt, SCRAM nonces) between messages, which must not be shared between
    /// connections. The process-id generator is shared, so every connection gets its own id.
    pub(crate) fn startup(
        self: &Arc<Self>,
        trust: bool,
        tls: Option<&Tls>,
        parameters: Arc<DefaultServerParameterProvider>,
        pids: Arc<RandomPidSecretKeyGenerator>,
        interrupts: Arc<cancel::Registry>,
    ) -> Startup {
        let method = if trust {
            StartupMethod::Trust(Trust {
                user: self.user.clone(),
                parameters,
                pids,
            })
        } else {
            match self.method {
                AuthMethod::ScramSha256 => {
                    let mut scram = ScramAuth::new(self.clone());
                    scram.set_iterations(SCRAM_ITERATIONS);
                    if let Some(tls) = &tls
                        && let Err(e) = scram.configure_certificate(&tls.cert_pem)
                    {
                        tracing::warn!("SCRAM channel binding unavailable: {e}");
                    }
                    StartupMethod::Scram(
                        SASLAuthStartupHandler::new(parameters)
                            .with_scram(scram)
                            .with_pid_secret_key_generator(pids),
                    )
                }
                AuthMethod::Md5 => StartupMethod::Md5(
                    Md5PasswordAuthStartupHandler::new(self.clone(), parameters)
                        .with_pid_secret_key_generator(pids),
                ),
                AuthMethod::Password => StartupMethod::Password(
                    CleartextPasswordAuthStartupHandler::new(
                        SharedAuth(self.clone()),
                        super::server_parameters(),
                    )
                    .with_pid_secret_key_generator(pids),
                ),
            }
        };
        Startup { method, interrupts }
    }
}

impl Tls {
    /// The acceptor each connection's TLS handshake runs on.
    pub(crate) fn acceptor(&self) -> pgwire::tokio::TlsAcceptor {
        self.acceptor.clone()
    }
}
