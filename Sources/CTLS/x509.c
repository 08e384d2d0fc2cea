#include "gsock_x509.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int copy_out(const char *text, size_t n, char *out, size_t size) {
    if (size == 0) return -1;
    if (n >= size) n = size - 1;
    memcpy(out, text, n);
    out[n] = 0;
    return (int)n;
}

/// What `write` (PEM_write_bio_X509, PEM_write_bio_PUBKEY) writes of `object`, in a new
/// malloc'd *out; its length, or -1.
static long pem_of(int (*write)(BIO *, void *), void *object, char **out) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio) return -1;
    long n = -1;
    if (write(bio, object) == 1) {
        char *data;
        n = BIO_get_mem_data(bio, &data);
        *out = n > 0 ? malloc((size_t)n) : NULL;
        if (*out) memcpy(*out, data, (size_t)n);
        else n = -1;
    }
    BIO_free(bio);
    ERR_clear_error();
    return n;
}

static int write_certificate(BIO *bio, void *cert) { return PEM_write_bio_X509(bio, cert); }
static int write_public_key(BIO *bio, void *key) { return PEM_write_bio_PUBKEY(bio, key); }

long gs_x509_pem(X509 *cert, char **out) { return pem_of(write_certificate, cert, out); }

long gs_x509_pubkey(X509 *cert, char **out, char *type, size_t type_size, int *bits) {
    EVP_PKEY *key = X509_get0_pubkey(cert);
    if (!key) { ERR_clear_error(); return -1; }
    long n = pem_of(write_public_key, key, out);
    const char *name;
    switch (EVP_PKEY_base_id(key)) {
    case EVP_PKEY_RSA: name = "RSA"; break;
    case EVP_PKEY_DSA: name = "DSA"; break;
    case EVP_PKEY_DH: name = "DH"; break;
    case EVP_PKEY_EC: name = "EC"; break;
    default: name = "Unknown"; break;
    }
    copy_out(name, strlen(name), type, type_size);
    *bits = EVP_PKEY_get_bits(key);
    return n;
}

X509 *gs_x509_load_pem(const char *pem, size_t length) {
    BIO *bio = BIO_new_mem_buf(pem, (int)length);
    if (!bio) return NULL;
    X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ERR_clear_error();
    return cert;
}

int gs_x509_chain_break(const char *pem, size_t length) {
    BIO *bio = BIO_new_mem_buf(pem, (int)length);
    if (!bio) return -1;
    X509 *previous = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    int result = previous ? 0 : -1, position = 1;
    X509 *next;
    while (previous && (next = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (result == 0 && X509_check_issued(next, previous) != X509_V_OK) result = position;
        X509_free(previous);
        previous = next;
        position++;
    }
    X509_free(previous);
    BIO_free(bio);
    ERR_clear_error();
    return result;
}

int gs_x509_time(X509 *cert, int which, char *out, size_t size) {
    const ASN1_TIME *t = which == 0 ? X509_get0_notBefore(cert) : X509_get0_notAfter(cert);
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || !t || ASN1_TIME_print(bio, t) != 1) { BIO_free(bio); return -1; }
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    int r = copy_out(data, (size_t)n, out, size);
    BIO_free(bio);
    return r;
}

int gs_x509_serial(X509 *cert, char *out, size_t size) {
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    if (!bn) return -1;
    char *hex = BN_bn2hex(bn);
    BN_free(bn);
    if (!hex) return -1;
    int r = copy_out(hex, strlen(hex), out, size);
    OPENSSL_free(hex);
    return r;
}

static X509_NAME *name_of(X509 *cert, int which) {
    return which == 0 ? X509_get_subject_name(cert) : X509_get_issuer_name(cert);
}

int gs_x509_name_count(X509 *cert, int which) { return X509_NAME_entry_count(name_of(cert, which)); }

int gs_x509_name_entry(X509 *cert, int which, int i, char *oid, size_t oid_size, char *name, size_t name_size,
                       char *value, size_t value_size) {
    X509_NAME_ENTRY *entry = X509_NAME_get_entry(name_of(cert, which), i);
    if (!entry) return -1;
    ASN1_OBJECT *object = X509_NAME_ENTRY_get_object(entry);
    OBJ_obj2txt(oid, (int)oid_size, object, 1);
    int nid = OBJ_obj2nid(object);
    const char *ln = nid == NID_undef ? oid : OBJ_nid2ln(nid);
    copy_out(ln, strlen(ln), name, name_size);
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(entry));
    if (n < 0) return -1;
    int r = copy_out((const char *)utf8, (size_t)n, value, value_size);
    OPENSSL_free(utf8);
    return r;
}

int gs_x509_digest(X509 *cert, const char *algorithm, char *out, size_t size) {
    const EVP_MD *md = EVP_get_digestbyname(algorithm);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!md || X509_digest(cert, md, digest, &n) != 1 || size < 2 * (size_t)n + 1) return -1;
    for (unsigned int i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", digest[i]);
    return (int)(2 * n);
}

int gs_x509_signature_name(X509 *cert, char *out, size_t size) {
    int nid = X509_get_signature_nid(cert);
    const char *ln = nid == NID_undef ? NULL : OBJ_nid2ln(nid);
    return ln ? copy_out(ln, strlen(ln), out, size) : -1;
}

int gs_x509_valid_at(X509 *cert, time_t t) {
    return X509_cmp_time(X509_get0_notBefore(cert), &t) <= 0 && X509_cmp_time(X509_get0_notAfter(cert), &t) >= 0;
}

int gs_x509_alt_names(X509 *cert, int type, char *out, size_t size) {
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    size_t used = 0;
    out[0] = 0;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
        char text[64];
        const char *piece = NULL;
        size_t n = 0;
        if (type == 0 && name->type == GEN_DNS) {
            piece = (const char *)ASN1_STRING_get0_data(name->d.dNSName);
            n = (size_t)ASN1_STRING_length(name->d.dNSName);
        } else if (type == 1 && name->type == GEN_IPADD) {
            const unsigned char *b = ASN1_STRING_get0_data(name->d.iPAddress);
            int len = ASN1_STRING_length(name->d.iPAddress);
            if (len == 4) snprintf(text, sizeof text, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
            else if (len == 16) snprintf(text, sizeof text, "%x:%x:%x:%x:%x:%x:%x:%x", b[0] << 8 | b[1], b[2] << 8 | b[3],
                                         b[4] << 8 | b[5], b[6] << 8 | b[7], b[8] << 8 | b[9], b[10] << 8 | b[11],
                                         b[12] << 8 | b[13], b[14] << 8 | b[15]);
            else continue;
            piece = text;
            n = strlen(text);
        }
        if (!piece || used + n + 2 > size) continue;
        if (used > 0) out[used++] = '\n';
        memcpy(out + used, piece, n);
        used += n;
        out[used] = 0;
    }
    GENERAL_NAMES_free(names);
    return (int)used;
}
