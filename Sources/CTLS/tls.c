#include "gsock_tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/socket.h>
#include <openssl/x509v3.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int gs_tls_set_min_version(SSL_CTX *ctx, int version) { return (int)SSL_CTX_set_min_proto_version(ctx, version); }
int gs_tls_set_max_version(SSL_CTX *ctx, int version) { return (int)SSL_CTX_set_max_proto_version(ctx, version); }
long gs_tls_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }
int gs_tls_set_groups(SSL_CTX *ctx, const char *list) { return (int)SSL_CTX_set1_groups_list(ctx, list); }
int gs_tls_set_host_name(SSL *ssl, const char *name) { return (int)SSL_set_tlsext_host_name(ssl, name); }

int gs_tls_request_status(SSL *ssl) { return (int)SSL_set_tlsext_status_type(ssl, TLSEXT_STATUSTYPE_ocsp); }

int gs_tls_use_ip_check(SSL *ssl, const char *ip) {
    return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip);
}

// Options (LuaSec's names) -------------------------------------------------------------

static const struct { const char *name; uint64_t bit; } options[] = {
    { "all", SSL_OP_ALL },
    { "allow_unsafe_legacy_renegotiation", SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION },
    { "cipher_server_preference", SSL_OP_CIPHER_SERVER_PREFERENCE },
    { "cisco_anyconnect", SSL_OP_CISCO_ANYCONNECT },
    { "cookie_exchange", SSL_OP_COOKIE_EXCHANGE },
    { "dont_insert_empty_fragments", SSL_OP_DONT_INSERT_EMPTY_FRAGMENTS },
    { "enable_middlebox_compat", SSL_OP_ENABLE_MIDDLEBOX_COMPAT },
    { "legacy_server_connect", SSL_OP_LEGACY_SERVER_CONNECT },
    { "no_anti_replay", SSL_OP_NO_ANTI_REPLAY },
    { "no_compression", SSL_OP_NO_COMPRESSION },
    { "no_encrypt_then_mac", SSL_OP_NO_ENCRYPT_THEN_MAC },
    { "no_query_mtu", SSL_OP_NO_QUERY_MTU },
    { "no_renegotiation", SSL_OP_NO_RENEGOTIATION },
    { "no_session_resumption_on_renegotiation", SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION },
    { "no_sslv2", SSL_OP_NO_SSLv2 },
    { "no_sslv3", SSL_OP_NO_SSLv3 },
    { "no_ticket", SSL_OP_NO_TICKET },
    { "no_tlsv1", SSL_OP_NO_TLSv1 },
    { "no_tlsv1_1", SSL_OP_NO_TLSv1_1 },
    { "no_tlsv1_2", SSL_OP_NO_TLSv1_2 },
    { "no_tlsv1_3", SSL_OP_NO_TLSv1_3 },
    { "prioritize_chacha", SSL_OP_PRIORITIZE_CHACHA },
    { "single_dh_use", SSL_OP_SINGLE_DH_USE },
    { "single_ecdh_use", SSL_OP_SINGLE_ECDH_USE },
    { "tls_rollback_bug", SSL_OP_TLS_ROLLBACK_BUG },
};

uint64_t gs_tls_base_options(void) {
    return SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;
}

int gs_tls_option(const char *name, uint64_t *bit) {
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++) {
        if (strcmp(options[i].name, name) == 0) {
            *bit = options[i].bit;  // 0 for the options OpenSSL 3 no longer needs
            return 1;
        }
    }
    return 0;
}

// The socket BIO ---------------------------------------------------------------------------

typedef struct {
    int fd;
    int eof;  ///< recv returned 0: OpenSSL asks (BIO_CTRL_EOF) to tell a close from an error
    int broken;  ///< a send failed with EPIPE or ECONNRESET: nothing sent later can arrive
    unsigned char *out;
    size_t start, end, capacity;
} socket_bio;

static int bio_write(BIO *b, const char *data, int length) {
    socket_bio *st = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    if (length <= 0) return 0;
    size_t sent = 0;
    if (st->end == st->start) {
        ssize_t n;
        do n = send(st->fd, data, (size_t)length, MSG_NOSIGNAL); while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            if (errno == EPIPE || errno == ECONNRESET) st->broken = 1;
            return -1;
        }
        if (n > 0) sent = (size_t)n;
    }
    size_t rest = (size_t)length - sent;
    if (rest > 0) {
        if (st->start > 0 && st->end + rest > st->capacity) {
            memmove(st->out, st->out + st->start, st->end - st->start);
            st->end -= st->start;
            st->start = 0;
        }
        if (st->end + rest > st->capacity) {
            size_t capacity = st->capacity ? st->capacity : 16384;
            while (capacity < st->end + rest) capacity *= 2;
            unsigned char *grown = realloc(st->out, capacity);
            if (!grown) { errno = ENOMEM; return -1; }
            st->out = grown;
            st->capacity = capacity;
        }
        memcpy(st->out + st->end, data + sent, rest);
        st->end += rest;
    }
    return length;
}

static int bio_read(BIO *b, char *buffer, int length) {
    socket_bio *st = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n;
    do n = recv(st->fd, buffer, (size_t)length, 0); while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
        return -1;
    }
    if (n == 0) st->eof = 1;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr) {
    (void)num; (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH: case BIO_CTRL_DUP: return 1;
    case BIO_CTRL_EOF: return ((socket_bio *)BIO_get_data(b))->eof;
    default: return 0;
    }
}

static int bio_create(BIO *b) {
    socket_bio *st = calloc(1, sizeof *st);
    if (!st) return 0;
    st->fd = -1;
    BIO_set_data(b, st);
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy(BIO *b) {
    socket_bio *st = BIO_get_data(b);
    if (st) {
        free(st->out);
        free(st);
    }
    BIO_set_data(b, NULL);
    return 1;
}

static BIO_METHOD *socket_method(void) {
    static BIO_METHOD *method;
    if (!method) {
        method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "gsockd socket");
        BIO_meth_set_write(method, bio_write);
        BIO_meth_set_read(method, bio_read);
        BIO_meth_set_ctrl(method, bio_ctrl);
        BIO_meth_set_create(method, bio_create);
        BIO_meth_set_destroy(method, bio_destroy);
    }
    return method;
}

int gs_tls_set_socket(SSL *ssl, int fd) {
    BIO *bio = BIO_new(socket_method());
    if (!bio) return 0;
    ((socket_bio *)BIO_get_data(bio))->fd = fd;
    SSL_set_bio(ssl, bio, bio);
    return 1;
}

size_t gs_tls_pending_output(SSL *ssl) {
    socket_bio *st = BIO_get_data(SSL_get_wbio(ssl));
    return st ? st->end - st->start : 0;
}

int gs_tls_peer_gone(SSL *ssl) {
    socket_bio *st = BIO_get_data(SSL_get_wbio(ssl));
    return st ? st->broken || st->eof : 0;
}

int gs_tls_flush(SSL *ssl) {
    socket_bio *st = BIO_get_data(SSL_get_wbio(ssl));
    while (st && st->end > st->start) {
        ssize_t n = send(st->fd, st->out + st->start, st->end - st->start, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
            if (errno == EPIPE || errno == ECONNRESET) st->broken = 1;
            return -1;
        }
        st->start += (size_t)n;
    }
    if (st) st->start = st->end = 0;
    return 1;
}

// Verification -------------------------------------------------------------------------

static int info_index(void) {
    static int index = -1;
    if (index < 0) index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    return index;
}

static int verify_callback(int ok, X509_STORE_CTX *store) {
    if (ok) return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    gs_tls_verify_info *info = ssl ? SSL_get_ex_data(ssl, info_index()) : NULL;
    if (info && info->error == 0) {
        info->error = X509_STORE_CTX_get_error(store);
        info->depth = X509_STORE_CTX_get_error_depth(store);
        X509 *cert = X509_STORE_CTX_get_current_cert(store);
        info->subject[0] = info->issuer[0] = info->names[0] = 0;
        if (cert) {
            X509_NAME_oneline(X509_get_subject_name(cert), info->subject, sizeof info->subject);
            X509_NAME_oneline(X509_get_issuer_name(cert), info->issuer, sizeof info->issuer);
            gs_tls_certificate_names(cert, info->names, sizeof info->names);
        }
    }
    return ok;
}

void gs_tls_set_verify(SSL *ssl, int mode, gs_tls_verify_info *info) {
    memset(info, 0, sizeof *info);
    SSL_set_ex_data(ssl, info_index(), info);
    SSL_set_verify(ssl, mode, verify_callback);
}

// SNI ------------------------------------------------------------------------------------

typedef struct {
    size_t count, capacity;
    int strict;
    struct { char *name; SSL_CTX *context; } *entries;
} sni_table;

static void free_sni(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    sni_table *table = ptr;
    if (!table) return;
    for (size_t i = 0; i < table->count; i++) {
        free(table->entries[i].name);
        SSL_CTX_free(table->entries[i].context);
    }
    free(table->entries);
    free(table);
}

static int sni_index(void) {
    static int index = -1;
    if (index < 0) index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_sni);
    return index;
}

static int name_matches(const char *pattern, const char *name) {
    if (strcasecmp(pattern, name) == 0) return 1;
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        return dot && dot != name && strcasecmp(pattern + 1, dot) == 0;
    }
    return 0;
}

static int connection_sni_index(void) {
    static int index = -1;
    if (index < 0) index = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_sni);
    return index;
}

static int servername(SSL *ssl, int *alert, void *arg) {
    sni_table *table = SSL_get_ex_data(ssl, connection_sni_index());  // conn:sni({...}) first
    if (!table) table = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!table) return SSL_TLSEXT_ERR_NOACK;
    for (size_t i = 0; name && i < table->count; i++) {
        if (name_matches(table->entries[i].name, name)) {
            SSL_set_SSL_CTX(ssl, table->entries[i].context);
            return SSL_TLSEXT_ERR_OK;
        }
    }
    if (table->strict) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return name ? SSL_TLSEXT_ERR_OK : SSL_TLSEXT_ERR_NOACK;  // the default certificate
}

static int table_add(sni_table *table, const char *name, SSL_CTX *context) {
    if (table->count == table->capacity) {
        size_t capacity = table->capacity ? 2 * table->capacity : 4;
        void *grown = realloc(table->entries, capacity * sizeof *table->entries);
        if (!grown) return 0;
        table->entries = grown;
        table->capacity = capacity;
    }
    char *copy = strdup(name);
    if (!copy || SSL_CTX_up_ref(context) != 1) { free(copy); return 0; }
    table->entries[table->count].name = copy;
    table->entries[table->count].context = context;
    table->count++;
    return 1;
}

int gs_tls_set_connection_sni(SSL *ssl, const char **names, SSL_CTX **contexts, int count, int strict) {
    sni_table *table = calloc(1, sizeof *table);
    if (!table) return 0;
    table->strict = strict;
    for (int i = 0; i < count; i++) {
        if (!table_add(table, names[i], contexts[i])) { free_sni(NULL, table, NULL, 0, 0, NULL); return 0; }
    }
    free_sni(NULL, SSL_get_ex_data(ssl, connection_sni_index()), NULL, 0, 0, NULL);
    SSL_set_ex_data(ssl, connection_sni_index(), table);
    // The callback is the context's: it looks at the connection's table first.
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    if (!SSL_CTX_get_ex_data(ctx, sni_index())) SSL_CTX_set_tlsext_servername_callback(ctx, servername);
    return 1;
}

int gs_tls_add_sni_context(SSL_CTX *ctx, const char *name, SSL_CTX *context) {
    sni_table *table = SSL_CTX_get_ex_data(ctx, sni_index());
    if (!table) {
        table = calloc(1, sizeof *table);
        if (!table) return 0;
        SSL_CTX_set_ex_data(ctx, sni_index(), table);
        SSL_CTX_set_tlsext_servername_callback(ctx, servername);
        SSL_CTX_set_tlsext_servername_arg(ctx, table);
    }
    return table_add(table, name, context);
}

// ALPN ---------------------------------------------------------------------------------

typedef struct { unsigned int length; unsigned char bytes[]; } alpn_list;

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    alpn_list *ours = arg;
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, outlen, ours->bytes, ours->length, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

static void free_alpn(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    free(ptr);
}

int gs_tls_set_alpn_select(SSL_CTX *ctx, const unsigned char *protocols, unsigned int length) {
    static int index = -1;
    if (index < 0) index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_alpn);
    alpn_list *list = malloc(sizeof *list + length);
    if (!list) return 0;
    list->length = length;
    memcpy(list->bytes, protocols, length);
    free(SSL_CTX_get_ex_data(ctx, index));
    SSL_CTX_set_ex_data(ctx, index, list);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, list);
    return 1;
}

static pthread_mutex_t system_store_lock = PTHREAD_MUTEX_INITIALIZER;
static X509_STORE *system_store;
static char *system_store_stamp;

int gs_tls_use_system_store(SSL_CTX *ctx, const char *stamp) {
    pthread_mutex_lock(&system_store_lock);
    if (!system_store || strcmp(stamp, system_store_stamp) != 0) {
        X509_STORE *store = X509_STORE_new();
        char *copy = strdup(stamp);
        if (!store || !copy || X509_STORE_set_default_paths(store) != 1) {
            X509_STORE_free(store);
            free(copy);
            pthread_mutex_unlock(&system_store_lock);
            return 0;
        }
        X509_STORE_free(system_store);   // the contexts that use it hold their own references
        free(system_store_stamp);
        system_store = store;
        system_store_stamp = copy;
    }
    X509_STORE_up_ref(system_store);
    SSL_CTX_set_cert_store(ctx, system_store);
    pthread_mutex_unlock(&system_store_lock);
    return 1;
}

void gs_tls_sha256(const unsigned char *bytes, size_t length, unsigned char *digest) {
    SHA256(bytes, length, digest);
}

int gs_tls_set_session_id_context(SSL_CTX *ctx, const unsigned char *id, unsigned int length) {
    return SSL_CTX_set_session_id_context(ctx, id, length);
}

void gs_tls_prebuild_chain(SSL_CTX *ctx) {
    STACK_OF(X509) *chain = NULL, *extra = NULL;
    if (SSL_CTX_get0_certificate(ctx) == NULL) return;
    if (SSL_CTX_get0_chain_certs(ctx, &chain) != 1 || chain != NULL) return;
    if (SSL_CTX_get_extra_chain_certs_only(ctx, &extra) != 1 || extra != NULL) return;
    if (SSL_CTX_build_cert_chain(ctx, SSL_BUILD_CHAIN_FLAG_IGNORE_ERROR | SSL_BUILD_CHAIN_FLAG_CLEAR_ERROR) <= 0) {
        ERR_clear_error();
    }
}

int gs_tls_set_ticket_keys(SSL_CTX *ctx, const unsigned char *keys, size_t length) {
    return (int)SSL_CTX_set_tlsext_ticket_keys(ctx, (void *)keys, (long)length);
}

// Passwords ----------------------------------------------------------------------------

static int password_callback(char *buf, int size, int rwflag, void *userdata) {
    (void)rwflag;
    const char *password = userdata;
    if (!password) return 0;
    size_t n = strlen(password);
    if (n > (size_t)size) n = (size_t)size;
    memcpy(buf, password, n);
    return (int)n;
}

static void free_password(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
    (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
    if (ptr) {
        OPENSSL_cleanse(ptr, strlen(ptr));
        free(ptr);
    }
}

void gs_tls_set_password(SSL_CTX *ctx, const char *password) {
    static int index = -1;
    if (index < 0) index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_password);
    if (!password) {  // an encrypted key without a password fails instead of asking the terminal
        SSL_CTX_set_default_passwd_cb(ctx, password_callback);
        SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
        return;
    }
    char *copy = strdup(password);
    free_password(NULL, SSL_CTX_get_ex_data(ctx, index), NULL, 0, 0, NULL);
    SSL_CTX_set_ex_data(ctx, index, copy);
    SSL_CTX_set_default_passwd_cb(ctx, password_callback);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, copy);
}

// Key logging --------------------------------------------------------------------------

static FILE *keylog;

static void keylog_callback(const SSL *ssl, const char *line) {
    (void)ssl;
    if (!keylog) return;
    fputs(line, keylog);
    fputc('\n', keylog);
    fflush(keylog);
}

int gs_tls_set_keylog_file(SSL_CTX *ctx, const char *path) {
    if (!keylog) {
        // Secrets: readable by the owner only, and not inherited by programs the handler runs.
        int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0 && !(keylog = fdopen(fd, "a"))) close(fd);
    }
    if (!keylog) return 0;
    SSL_CTX_set_keylog_callback(ctx, keylog_callback);
    return 1;
}

// Client sessions ----------------------------------------------------------------------

static int slot_index(void) {
    static int index = -1;
    if (index < 0) index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    return index;
}

static int new_session(SSL *ssl, SSL_SESSION *session) {
    gs_tls_session_slot *slot = SSL_get_ex_data(ssl, slot_index());
    if (!slot || !SSL_SESSION_is_resumable(session)) return 0;
    if (slot->session) SSL_SESSION_free(slot->session);
    slot->session = session;
    return 1;  // the slot keeps the reference
}

void gs_tls_enable_client_sessions(SSL_CTX *ctx) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, new_session);
}

void gs_tls_set_session_slot(SSL *ssl, gs_tls_session_slot *slot) { SSL_set_ex_data(ssl, slot_index(), slot); }

void gs_tls_clear_session_slot(gs_tls_session_slot *slot) {
    if (slot->session) SSL_SESSION_free(slot->session);
    slot->session = NULL;
}

int gs_tls_use_pem(SSL_CTX *ctx, const char *cert, size_t cert_length, const char *key, size_t key_length) {
    BIO *bio = BIO_new_mem_buf(cert, (int)cert_length);
    if (!bio) return 0;
    X509 *leaf = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL);
    int ok = leaf && SSL_CTX_use_certificate(ctx, leaf) == 1;
    X509_free(leaf);
    X509 *extra;
    while (ok && (extra = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (SSL_CTX_add_extra_chain_cert(ctx, extra) != 1) { X509_free(extra); ok = 0; }
    }
    ERR_clear_error();  // the end of the PEM text
    BIO_free(bio);
    if (!ok) return 0;
    bio = BIO_new_mem_buf(key, (int)key_length);
    if (!bio) return 0;
    EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    ok = pkey && SSL_CTX_use_PrivateKey(ctx, pkey) == 1 && SSL_CTX_check_private_key(ctx) == 1;
    EVP_PKEY_free(pkey);
    return ok;
}

STACK_OF(X509) *gs_tls_local_chain(SSL *ssl) {
    STACK_OF(X509) *chain = NULL;
    return SSL_get0_chain_certs(ssl, &chain) == 1 ? chain : NULL;
}

int gs_tls_dane_enable(SSL_CTX *ctx, int no_ee_namechecks) {
    if (SSL_CTX_dane_enable(ctx) <= 0) return 0;
    if (no_ee_namechecks) SSL_CTX_dane_set_flags(ctx, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
    return 1;
}

int gs_tls_use_dh_params(SSL_CTX *ctx, const char *pem, size_t length) {
    BIO *bio = BIO_new_mem_buf(pem, (int)length);
    if (!bio) return 0;
    EVP_PKEY *dh = PEM_read_bio_Parameters(bio, NULL);
    BIO_free(bio);
    int result = 0;
    if (dh && EVP_PKEY_is_a(dh, "DH")) result = SSL_CTX_set0_tmp_dh_pkey(ctx, dh) == 1 ? 1 : -1;
    if (result != 1) {   // set0 takes the key only when it succeeds
        EVP_PKEY_free(dh);
        ERR_clear_error();
    }
    return result;
}

// Names and errors ---------------------------------------------------------------------

static void append(char *out, size_t size, size_t *used, const char *text, size_t n) {
    if (*used + n + 3 >= size) return;
    if (*used > 0) {
        memcpy(out + *used, ", ", 2);
        *used += 2;
    }
    memcpy(out + *used, text, n);
    *used += n;
    out[*used] = 0;
}

int gs_tls_certificate_names(X509 *cert, char *out, size_t size) {
    size_t used = 0;
    int count = 0;
    out[0] = 0;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
        if (name->type == GEN_DNS) {
            const ASN1_IA5STRING *dns = name->d.dNSName;
            append(out, size, &used, (const char *)ASN1_STRING_get0_data(dns), (size_t)ASN1_STRING_length(dns));
            count++;
        } else if (name->type == GEN_IPADD) {
            const ASN1_OCTET_STRING *ip = name->d.iPAddress;
            char text[64];
            const unsigned char *b = ASN1_STRING_get0_data(ip);
            if (ASN1_STRING_length(ip) == 4) {
                snprintf(text, sizeof text, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
            } else if (ASN1_STRING_length(ip) == 16) {
                snprintf(text, sizeof text, "%x:%x:%x:%x:%x:%x:%x:%x",
                         b[0] << 8 | b[1], b[2] << 8 | b[3], b[4] << 8 | b[5], b[6] << 8 | b[7],
                         b[8] << 8 | b[9], b[10] << 8 | b[11], b[12] << 8 | b[13], b[14] << 8 | b[15]);
            } else {
                continue;
            }
            append(out, size, &used, text, strlen(text));
            count++;
        }
    }
    GENERAL_NAMES_free(names);
    if (count == 0) {
        char cn[256];
        int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
        if (n > 0) {
            append(out, size, &used, cn, (size_t)n);
            count++;
        }
    }
    return count;
}

unsigned long gs_tls_last_error(char *out, size_t size) {
    unsigned long first = 0, e;
    out[0] = 0;
    while ((e = ERR_get_error()) != 0) {
        if (first == 0) {
            first = e;
            const char *reason = ERR_reason_error_string(e);
            if (reason) snprintf(out, size, "%s", reason);
            else ERR_error_string_n(e, out, size);
        }
    }
    return first;
}

int gs_tls_error(SSL *ssl, int ret) { return SSL_get_error(ssl, ret); }
