// The C side of gsockd's TLS (SPEC §10): OpenSSL's macros as functions Swift can call,
// and the callbacks OpenSSL runs (verification, ALPN selection, key logging, passwords).
// None of them calls Lua, so no Lua error can longjmp through OpenSSL.
#ifndef GSOCK_TLS_H
#define GSOCK_TLS_H

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "gsock_x509.h"

// Macros of ssl.h.
int gs_tls_set_min_version(SSL_CTX *ctx, int version);
int gs_tls_set_max_version(SSL_CTX *ctx, int version);
long gs_tls_set_mode(SSL_CTX *ctx, long mode);
int gs_tls_set_groups(SSL_CTX *ctx, const char *list);
int gs_tls_set_host_name(SSL *ssl, const char *name);
/// Asks the server for its certificate's OCSP status (the status_request extension).
int gs_tls_request_status(SSL *ssl);
int gs_tls_use_ip_check(SSL *ssl, const char *ip);

/// The options every context has: an EOF without close_notify is a close (SPEC §10), no
/// compression.
uint64_t gs_tls_base_options(void);

/// The SSL_OP_* bit of one of LuaSec's option names ("no_ticket", "cipher_server_preference",
/// ...) in `bit`; 0 for a name it does not know.
int gs_tls_option(const char *name, uint64_t *bit);

/// Gives `ssl` a BIO of gsockd's own on the non-blocking socket `fd`: reads are recv(2);
/// writes go out with send(2) and MSG_NOSIGNAL (a reset peer raises no SIGPIPE), and what
/// the socket does not take at once is kept in the BIO's buffer instead of being refused.
/// So OpenSSL never holds a half-written record, and a send that timed out can be followed
/// by any other: what OpenSSL encrypted is sent first (gs_tls_flush). 1 on success.
int gs_tls_set_socket(SSL *ssl, int fd);
/// Bytes encrypted and not yet taken by the socket.
size_t gs_tls_pending_output(SSL *ssl);
/// Sends what the BIO keeps: 1 when nothing is left, 0 when the socket would block, -1 on
/// an error (errno says which).
int gs_tls_flush(SSL *ssl);
/// 1 once the peer is gone: a send failed with EPIPE or ECONNRESET (it reset or closed the
/// connection), or a recv met the end of the stream (the peer closed it without a
/// close_notify first: OpenSSL reads no further than a close_notify). 0 otherwise.
int gs_tls_peer_gone(SSL *ssl);

/// The first verification failure of a connection, as its verify callback saw it.
typedef struct {
    int error;        ///< X509_V_ERR_*, 0 when none was seen
    int depth;
    char subject[256];
    char issuer[256];
    char names[512];  ///< the names the peer's certificate is for (gs_tls_certificate_names)
} gs_tls_verify_info;

/// Verifies with `mode` (SSL_VERIFY_*), recording the first failure in `info` (owned by the
/// caller, alive as long as the SSL object).
void gs_tls_set_verify(SSL *ssl, int mode, gs_tls_verify_info *info);

/// Server certificates chosen by SNI: when a client's server name is one of `names`
/// (exact, or "*.example.com" for one label), the connection uses `context` (its certificate
/// and key) instead of `ctx`'s. The contexts are held until `ctx` is freed. 1 on success.
int gs_tls_add_sni_context(SSL_CTX *ctx, const char *name, SSL_CTX *context);

/// LuaSec's server `conn:sni({name = ctx, ...}, strict)`: this connection's certificates by
/// SNI name; with `strict`, a name not in the list ends the handshake (unrecognized_name).
int gs_tls_set_connection_sni(SSL *ssl, const char **names, SSL_CTX **contexts, int count, int strict);

/// Server ALPN: `protocols` in wire format (length-prefixed), copied into the context; the
/// first of the client's protocols that is in the list is selected, else none.
int gs_tls_set_alpn_select(SSL_CTX *ctx, const unsigned char *protocols, unsigned int length);

/// Makes `ctx` verify with the system CA store (OpenSSL's default paths), one X509_STORE
/// shared by every context: loading the bundle costs ~17 ms, and pgmoon-style clients
/// make a context per connection. Loaded again when `stamp` (what the store's files are
/// now) differs from the one it was loaded with. 1, or 0 when it cannot be loaded.
int gs_tls_use_system_store(SSL_CTX *ctx, const char *stamp);

/// The SHA-256 of bytes[0 ..< length], 32 bytes into `digest`.
void gs_tls_sha256(const unsigned char *bytes, size_t length, unsigned char *digest);

/// The context sessions belong to (at most 32 bytes): a session resumes only on a context
/// of the same id (and a server verifying clients without one resumes none).
int gs_tls_set_session_id_context(SSL_CTX *ctx, const unsigned char *id, unsigned int length);

/// The session ticket keys of a server context: 80 bytes (name, HMAC and AES keys).
int gs_tls_set_ticket_keys(SSL_CTX *ctx, const unsigned char *keys, size_t length);
/// For a certificate loaded without chain certificates, builds once the chain OpenSSL
/// would otherwise build from the context's store at every handshake (ssl_add_cert_chain's
/// X509_verify_cert, when SSL_MODE_NO_AUTO_CHAIN is unset): the same certificates, as far
/// as they can be found, errors ignored. Call once the store is loaded. A certificate with
/// its own chain, or a chain that cannot be built (a security level refusal), is left as
/// it is.
void gs_tls_prebuild_chain(SSL_CTX *ctx);

/// A private key's password, copied into the context; NULL: an encrypted key fails to
/// load instead of OpenSSL asking the terminal.
void gs_tls_set_password(SSL_CTX *ctx, const char *password);

/// SSLKEYLOGFILE: key material lines appended to `path` (NSS key log format).
int gs_tls_set_keylog_file(SSL_CTX *ctx, const char *path);

/// The newest session of a client connection, kept for resumption; owned by the caller.
typedef struct { SSL_SESSION *session; } gs_tls_session_slot;

/// Client session caching on `ctx`: every new session of a connection given a slot (below)
/// is kept in that slot (TLS 1.3 sends its tickets after the handshake).
void gs_tls_enable_client_sessions(SSL_CTX *ctx);
/// Keeps `ssl`'s new sessions in `slot` (alive as long as the SSL object).
void gs_tls_set_session_slot(SSL *ssl, gs_tls_session_slot *slot);
/// Frees the session a slot holds.
void gs_tls_clear_session_slot(gs_tls_session_slot *slot);

/// The chain certificates sent with this connection's own certificate (not the leaf), or
/// NULL (SSL_get0_chain_certs: owned by `ssl`).
STACK_OF(X509) *gs_tls_local_chain(SSL *ssl);
/// Loads a certificate chain and key given as PEM text into `ctx` (1 on success).
int gs_tls_use_pem(SSL_CTX *ctx, const char *cert, size_t cert_length, const char *key, size_t key_length);
/// Turns DANE on for `ctx`'s connections (each gets its TLSA records with SSL_dane_enable
/// and SSL_dane_tlsa_add); with `no_ee_namechecks`, a DANE-EE(3) match skips name checks.
/// 1 on success.
int gs_tls_dane_enable(SSL_CTX *ctx, int no_ee_namechecks);
/// Gives a server the DH parameters in `pem` ("BEGIN DH PARAMETERS") for its DHE cipher
/// suites: 1 on success, 0 when the text holds no DH parameters, -1 when OpenSSL refuses
/// them (too small for its security level).
int gs_tls_use_dh_params(SSL_CTX *ctx, const char *pem, size_t length);

/// The names a certificate is for: its DNS and IP subject alternative names, else its
/// common name, joined with ", " into `out`; the count of names.
int gs_tls_certificate_names(X509 *cert, char *out, size_t size);

/// The reason of the last OpenSSL error on this thread (and clears the queue); 0 when none.
unsigned long gs_tls_last_error(char *out, size_t size);

/// SSL_get_error's value for a return value `ret` of an I/O call on `ssl`.
int gs_tls_error(SSL *ssl, int ret);

#endif
