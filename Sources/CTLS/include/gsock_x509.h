// Reading X.509 certificates for LuaSec's x509 objects (SPEC §10): each call writes text
// into the caller's buffer and returns its length, or -1 when there is nothing to write.
#ifndef GSOCK_X509_H
#define GSOCK_X509_H

#include <openssl/x509.h>
#include <stddef.h>
#include <time.h>

/// The certificate in PEM form; the caller frees *out with free().
long gs_x509_pem(X509 *cert, char **out);
/// The public key in PEM form (the caller frees *out with free()), the name of its type
/// into `type` ("RSA", "DSA", "DH", "EC" or "Unknown", LuaSec's words) and its bits into
/// *bits; -1 when there is none.
long gs_x509_pubkey(X509 *cert, char **out, char *type, size_t type_size, int *bits);
/// A certificate from PEM text (a new reference), or NULL.
X509 *gs_x509_load_pem(const char *pem, size_t length);
/// notBefore (which 0) or notAfter (which 1), as "Jan  1 00:00:00 2026 GMT".
int gs_x509_time(X509 *cert, int which, char *out, size_t size);
/// The serial number in upper-case hex.
int gs_x509_serial(X509 *cert, char *out, size_t size);
/// The number of entries of the subject (which 0) or issuer (which 1) name.
int gs_x509_name_count(X509 *cert, int which);
/// Entry `i` of the subject or issuer: its OID, long name and value (UTF-8).
int gs_x509_name_entry(X509 *cert, int which, int i, char *oid, size_t oid_size, char *name, size_t name_size,
                       char *value, size_t value_size);
/// The digest ("sha1", "sha256", "sha512", ...) in lower-case hex.
int gs_x509_digest(X509 *cert, const char *algorithm, char *out, size_t size);
/// The signature algorithm's long name ("ecdsa-with-SHA256").
int gs_x509_signature_name(X509 *cert, char *out, size_t size);
/// 1 when `t` lies within the certificate's validity.
int gs_x509_valid_at(X509 *cert, time_t t);
/// Where the chain of a PEM file (leaf first) breaks: the 1-based position of the first
/// certificate its successor did not issue; 0 when every link holds (or there is one
/// certificate), -1 when there is none.
int gs_x509_chain_break(const char *pem, size_t length);

/// The DNS names (type 0) or IP addresses (type 1) of the subjectAltName, one per line.
int gs_x509_alt_names(X509 *cert, int type, char *out, size_t size);

#endif
