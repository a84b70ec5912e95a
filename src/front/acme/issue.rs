//! One certificate order with instant-acme (RFC 8555 §7): account, order
//! for all `domains`, one challenge per pending authorization, finalize
//! with a fresh key, download the chain, store it. The caller holds the
//! storage lock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use instant_acme::{
    Account, AccountBuilder, AccountCredentials, AuthorizationStatus, BodyWrapper, ChallengeType,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tracing::info;

use super::store::{self, Store, Stored};
use crate::config::tls::acme::{Acme as AcmeConfig, Challenge};

/// The longest one order may take, all steps together: a CA that stops
/// answering does not stall renewals for ever.
const ORDER_TIMEOUT: Duration = Duration::from_secs(300);

/// Order, validate, finalize and store a certificate for `config.domains`.
pub async fn issue(config: &AcmeConfig, store: &Store) -> Result<Stored, String> {
    let mut published = Published(Vec::new());
    let result = tokio::time::timeout(ORDER_TIMEOUT, order(config, store, &mut published.0)).await;
    drop(published);
    match result {
        Ok(r) => r,
        Err(_) => Err(format!("no certificate within {ORDER_TIMEOUT:?}")),
    }
}

/// The challenge answers this order published, removed when the order
/// ends, fails, times out or is dropped (a front told to stop).
struct Published(Vec<std::path::PathBuf>);

impl Drop for Published {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn order(
    config: &AcmeConfig,
    store: &Store,
    published: &mut Vec<std::path::PathBuf>,
) -> Result<Stored, String> {
    let account = account(config, store).await?;
    let identifiers: Vec<Identifier> = config
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(|e| format!("new order: {e}"))?;
    info!(order = order.url(), "ACME: order created");

    let kind = match config.challenge {
        Challenge::Http01 => ChallengeType::Http01,
        Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
        let domain = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => {
                info!(domain, "ACME: authorization already valid");
                continue;
            }
            other => return Err(format!("{domain}: authorization is {other:?}")),
        }
        let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
            format!(
                "{domain}: the CA offers no {} challenge",
                config.challenge.name()
            )
        })?;
        let key_auth = challenge.key_authorization();
        let path = match config.challenge {
            Challenge::Http01 => store.put_challenge(
                Challenge::Http01,
                &challenge.token,
                key_auth.as_str().as_bytes(),
            ),
            Challenge::TlsAlpn01 => {
                store.put_challenge(Challenge::TlsAlpn01, &domain, key_auth.digest().as_ref())
            }
        }
        .map_err(|e| format!("{domain}: cannot publish the challenge answer: {e}"))?;
        published.push(path);
        challenge
            .set_ready()
            .await
            .map_err(|e| format!("{domain}: {}: {e}", config.challenge.name()))?;
        info!(
            domain,
            challenge = config.challenge.name(),
            "ACME: challenge ready; the CA validates"
        );
    }

    let polled = order
        .poll_ready(
            &RetryPolicy::new()
                .initial_delay(Duration::from_millis(250))
                .timeout(Duration::from_secs(120)),
        )
        .await;
    let status = match polled {
        Ok(status) => status,
        Err(instant_acme::Error::Api(problem)) => {
            // The order's problem, and per domain the challenge's (often
            // the same text: then only the per-domain one).
            let first = problem.to_string();
            let each = why_invalid(&mut order).await;
            return Err(if each.contains(&first) {
                format!("the CA refused the order: {each}")
            } else {
                format!("the CA refused the order: {first} ({each})")
            });
        }
        Err(e) => return Err(format!("waiting for validation: {e}")),
    };
    if status != OrderStatus::Ready {
        return Err(format!(
            "the CA refused the order ({status:?}): {}",
            why_invalid(&mut order).await
        ));
    }
    info!("ACME: every domain validated; finalizing");

    let key = rcgen::KeyPair::generate().map_err(|e| format!("new key: {e}"))?;
    let mut params =
        rcgen::CertificateParams::new(config.domains.clone()).map_err(|e| format!("CSR: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| format!("CSR: {e}"))?;
    order
        .finalize_csr(csr.der())
        .await
        .map_err(|e| format!("finalize: {e}"))?;
    let chain = order
        .poll_certificate(&RetryPolicy::default())
        .await
        .map_err(|e| format!("downloading the certificate: {e}"))?;
    let key_pem = key.serialize_pem();
    let stored = store::parse_pair(chain.as_bytes(), key_pem.as_bytes())
        .map_err(|e| format!("the CA's certificate: {e}"))?;
    if !store::covers(&stored.key, &config.domains) {
        return Err("the CA's certificate does not cover every domain".into());
    }
    store.write(&chain, &key_pem).map_err(|e| {
        format!(
            "{}: cannot store the certificate: {e}",
            store.dir().display()
        )
    })?;
    Ok(stored)
}

/// The account for this directory: from storage, else created once and
/// stored (the account key never changes after that).
async fn account(config: &AcmeConfig, store: &Store) -> Result<Account, String> {
    let builder = || http_client(config.ca.as_deref());
    let saved = store
        .read_account(&config.directory)
        .map_err(|e| format!("{}: {e}", store.account_path(&config.directory).display()))?;
    if let Some(json) = saved {
        let credentials: AccountCredentials = serde_json::from_slice(&json).map_err(|e| {
            format!(
                "{}: not an account file: {e}",
                store.account_path(&config.directory).display()
            )
        })?;
        return builder()?
            .from_credentials(credentials)
            .await
            .map_err(|e| format!("directory {}: {e}", config.directory));
    }
    let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory.clone(),
            None,
        )
        .await
        .map_err(|e| format!("creating the account at {}: {e}", config.directory))?;
    let json = serde_json::to_vec(&credentials).map_err(|e| format!("account: {e}"))?;
    store
        .write_account(&config.directory, &json)
        .map_err(|e| format!("{}: {e}", store.account_path(&config.directory).display()))?;
    info!(account = account.id(), "ACME: account created and stored");
    Ok(account)
}

/// The HTTPS client that talks to the directory: the system's roots
/// (rustls-platform-verifier, as instant-acme's default client) plus the
/// certificates of `tls.acme.ca`.
fn http_client(ca: Option<&Path>) -> Result<AccountBuilder, String> {
    let extra = match ca {
        None => Vec::new(),
        Some(path) => {
            let bytes = std::fs::read(path)
                .map_err(|e| format!("tls.acme.ca {}: cannot read: {e}", path.display()))?;
            CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("tls.acme.ca {}: {e}", path.display()))?
        }
    };
    let provider = crate::config::tls::provider();
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider.clone())
            .map_err(|e| format!("HTTPS client (system roots + tls.acme.ca): {e}"))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("HTTPS client: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, BodyWrapper<Bytes>>(https);
    Ok(Account::builder_with_http(Box::new(client)))
}

/// The CA's reason for an invalid order: the first challenge error of
/// its authorizations.
async fn why_invalid(order: &mut instant_acme::Order) -> String {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        let domain = authz.identifier().to_string();
        if let Ok(state) = authz.refresh().await {
            for c in &state.challenges {
                if let Some(problem) = &c.error {
                    reasons.push(format!("{domain}: {problem}"));
                }
            }
        }
    }
    if reasons.is_empty() {
        "no reason given".into()
    } else {
        reasons.join("; ")
    }
}
