//! TLS on the MLLP listener (`ALERTCALL_HL7_TLS_CERT`, `ALERTCALL_HL7_TLS_KEY`): rustls with
//! the aws-lc-rs provider, the one the HTTP client and the database driver already use.

use std::sync::Arc;

use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The listener's TLS configuration from a PEM certificate chain (the server's certificate
/// first) and its PEM private key; the error names the file and what is wrong with it.
pub fn server_config(cert: &str, key: &str) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!("ALERTCALL_HL7_TLS_CERT={cert}: cannot read a PEM certificate chain ({e})")
        })?;
    if chain.is_empty() {
        return Err(format!(
            "ALERTCALL_HL7_TLS_CERT={cert}: no certificate in it (PEM, `-----BEGIN CERTIFICATE-----`)"
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("ALERTCALL_HL7_TLS_KEY={key}: cannot read a PEM private key ({e})"))?;
    let config = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS on the HL7 listener: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            format!(
                "ALERTCALL_HL7_TLS_CERT={cert} and ALERTCALL_HL7_TLS_KEY={key} do not make a \
                 TLS identity ({e}): is the key the certificate's?"
            )
        })?;
    Ok(Arc::new(config))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The test CA's server certificate and key (`tests/fixtures/tls/make.sh`).
    pub(crate) fn fixture(name: &str) -> String {
        format!("{}/tests/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn a_certificate_and_its_key_make_a_config_and_anything_else_says_why_not() {
        assert!(server_config(&fixture("server.pem"), &fixture("server.key")).is_ok());
        let missing = server_config("/nonexistent.pem", &fixture("server.key")).unwrap_err();
        assert!(
            missing.starts_with("ALERTCALL_HL7_TLS_CERT=/nonexistent.pem: cannot read"),
            "{missing}"
        );
        let swapped = server_config(&fixture("server.key"), &fixture("server.pem")).unwrap_err();
        assert!(swapped.contains("no certificate in it"), "{swapped}");
        let wrong_key = server_config(&fixture("server.pem"), &fixture("ca.pem")).unwrap_err();
        assert!(
            wrong_key.starts_with("ALERTCALL_HL7_TLS_KEY="),
            "{wrong_key}"
        );
    }
}
