/* test_zauth.c -- the bus's key derivation, the loopback classifier, the
 * *_FILE secret reader and the refusal of clear-text non-loopback endpoints
 * (cmocka). The CURVE handshakes themselves, with real daemons, are in
 * tests/integration/test_attack_bus.py.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "config.h"
#include "zauth.h"
#include "zsock.h"

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* The HMAC the derivation uses, on RFC 4231's test case 2. */
static void test_hmac_rfc4231(void **state)
{
    (void)state;
    uint8_t out[32];
    unsigned n = 0;
    char h[65];
    const char *data = "what do ya want for nothing?";
    assert_non_null(HMAC(EVP_sha256(), "Jefe", 4, (const unsigned char *)data, strlen(data), out, &n));
    assert_int_equal(n, 32);
    hex(out, 32, h);
    assert_string_equal(h, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* Fixed vectors (computed independently with Python's hmac and pyzmq's
 * curve_public): every process derives exactly these keys. */
static void test_derive_fixed_vector(void **state)
{
    (void)state;
    const char *secret = "tether-unit-secret-0123456789";
    uint8_t sk[32], pk[32];
    char h[65];
    assert_int_equal(zauth_derive(secret, strlen(secret), "tether-bus-server-v1", sk, pk), 0);
    hex(sk, 32, h);
    assert_string_equal(h, "00f131f34639507a7b2b21a1d145f7a18140f61ecffe65659dfb28f3559b3f9a");
    hex(pk, 32, h);
    assert_string_equal(h, "5daa97ab98e35cf210d276691f287ef13cf0e027fd88175e7cc47c4029c0c663");
    assert_int_equal(zauth_derive(secret, strlen(secret), "tether-bus-client-v1", sk, pk), 0);
    hex(sk, 32, h);
    assert_string_equal(h, "408b294bfd2e9fef0cab57cc4573e7d04c40fa795effad088cff3eac4152dc6f");
    hex(pk, 32, h);
    assert_string_equal(h, "615d610e5e0266f08f6aa4e82418cfb0e9c77515815140c0db6f4c86280e726d");
}

static void test_derive_differs_and_rejects_empty(void **state)
{
    (void)state;
    uint8_t a[32], b[32], pa[32], pb[32];
    assert_int_equal(zauth_derive("secret-one-0123456", 18, "tether-bus-server-v1", a, pa), 0);
    assert_int_equal(zauth_derive("secret-two-0123456", 18, "tether-bus-server-v1", b, pb), 0);
    assert_memory_not_equal(a, b, 32);
    assert_memory_not_equal(pa, pb, 32);
    assert_int_equal(zauth_derive("secret-one-0123456", 18, "tether-bus-client-v1", b, pb), 0);
    assert_memory_not_equal(a, b, 32);
    assert_int_equal(zauth_derive("", 0, "tether-bus-server-v1", a, pa), -EINVAL);
    assert_int_equal(zauth_derive("x", 1, "", a, pa), -EINVAL);
}

static void test_loopback_classifier(void **state)
{
    (void)state;
    static const char *yes[] = {
        "tcp://127.0.0.1:5550", "tcp://127.1.2.3:1", "tcp://127.255.255.255:*", "tcp://[::1]:5560",
        "tcp://localhost:5570", "tcp://LOCALHOST:5570", "inproc://busd-control", "ipc:///run/tether/bus",
        "tcp://127.0.0.1;127.0.0.1:5550", "tcp://127.0.0.1:0;[::1]:5550",
    };
    static const char *no[] = {
        "tcp://0.0.0.0:5550", "tcp://*:5550", "tcp://[::]:5560", "tcp://10.0.0.1:5560",
        "tcp://128.0.0.1:5560", "tcp://126.255.255.255:5560", "tcp://replayd:5560",
        "tcp://localhost.example.com:5560", "tcp://eth0:5550", "tcp://lo:5550", "tcp://[::ffff:10.0.0.1]:1",
        "tcp://10.0.0.1;127.0.0.1:5550", "tcp://127.0.0.1;10.0.0.2:5550", "tcp://127.0.0.1",
        "tcp://", "pgm://127.0.0.1;239.1.1.1:5555", "ws://127.0.0.1:80", "udp://127.0.0.1:1", "", NULL,
    };
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!zauth_is_loopback(yes[i]))
            fail_msg("%s should be loopback", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (zauth_is_loopback(no[i]))
            fail_msg("%s should not be loopback", no[i] ? no[i] : "(null)");
}

static void test_secret_file(void **state)
{
    (void)state;
    char path[] = "/tmp/test_zauth_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char body[] = "file-secret-0123456789abcdef\n\n";
    assert_int_equal(write(fd, body, sizeof(body) - 1), (ssize_t)(sizeof(body) - 1));
    close(fd);
    setenv("TETHER_UNIT_SECRET_FILE", path, 1);
    assert_string_equal(cfg_secret_file("TETHER_UNIT_SECRET"), "file-secret-0123456789abcdef");
    unsetenv("TETHER_UNIT_SECRET_FILE");
    unlink(path);
    setenv("TETHER_UNIT_PLAIN", "plain-secret", 1);
    assert_string_equal(cfg_secret_file("TETHER_UNIT_PLAIN"), "plain-secret");
    assert_string_equal(cfg_secret_file("TETHER_UNIT_ABSENT"), "");
}

/* No TETHER_BUS_SECRET in this process: clear text on loopback only. */
static void test_without_secret_loopback_only(void **state)
{
    (void)state;
    unsetenv("TETHER_BUS_SECRET");
    unsetenv("TETHER_BUS_SECRET_FILE");
    assert_int_equal(zauth_config(), 0);
    void *s = zsock_socket(ZMQ_ROUTER);
    assert_non_null(s);
    assert_int_equal(zauth_bind(s, "tcp://0.0.0.0:*"), -EPERM);
    assert_int_equal(zauth_bind(s, "tcp://127.0.0.1:*"), 0);
    zmq_close(s);
    void *d = zsock_socket(ZMQ_DEALER);
    assert_non_null(d);
    assert_int_equal(zauth_connect(d, "tcp://192.0.2.1:5560"), -EPERM);
    assert_int_equal(zauth_connect(d, "tcp://127.0.0.1:5560"), 0);
    zmq_close(d);
    zsock_ctx_term();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hmac_rfc4231),
        cmocka_unit_test(test_derive_fixed_vector),
        cmocka_unit_test(test_derive_differs_and_rejects_empty),
        cmocka_unit_test(test_loopback_classifier),
        cmocka_unit_test(test_secret_file),
        cmocka_unit_test(test_without_secret_loopback_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
