/* nvinfer serve's text handling (tools/nvinfer/serve_text.c): UTF-8 checks and the stop-string
 * matcher that holds back text a stop string may still claim.
 *
 * The matcher is checked against a naive reference: after every piece, look for each stop string
 * in the whole text so far with strstr; at the first piece where one appears, the answer is the
 * text before the earliest occurrence. Whatever the matcher hands out, piece by piece, must join
 * to exactly that answer, every handed-out chunk must be valid UTF-8, and no chunk may be held
 * back longer than a stop-string prefix or an incomplete character requires. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "serve.h"

static void test_utf8_incomplete_tail(void **state)
{
    (void)state;
    const char *e = "\xc3\xa9";             /* é */
    const char *euro = "\xe2\x82\xac";      /* € */
    const char *emoji = "\xf0\x9f\x98\x80"; /* U+1F600 */
    assert_int_equal(serve_utf8_incomplete_tail("abc", 3), 0);
    assert_int_equal(serve_utf8_incomplete_tail(e, 1), 1);
    assert_int_equal(serve_utf8_incomplete_tail(e, 2), 0);
    for (size_t i = 1; i < 3; i++)
        assert_int_equal(serve_utf8_incomplete_tail(euro, i), i);
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(serve_utf8_incomplete_tail(emoji, i), i);
    assert_int_equal(serve_utf8_incomplete_tail(emoji, 4), 0);
    /* A stray continuation byte or an invalid lead is not "incomplete": it never completes. */
    assert_int_equal(serve_utf8_incomplete_tail("a\x80", 2), 0);
    assert_int_equal(serve_utf8_incomplete_tail("a\xff", 2), 0);
    /* E0 80 can never be completed (overlong), ED A0 neither (surrogate). */
    assert_int_equal(serve_utf8_incomplete_tail("\xe0\x80", 2), 0);
    assert_int_equal(serve_utf8_incomplete_tail("\xed\xa0", 2), 0);
    assert_int_equal(serve_utf8_incomplete_tail("\xe0\xa0", 2), 2);
}

static void test_utf8_valid(void **state)
{
    (void)state;
    assert_true(serve_utf8_valid("", 0));
    assert_true(serve_utf8_valid("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80", 15));
    assert_false(serve_utf8_valid("\xc3", 1));             /* truncated */
    assert_false(serve_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    assert_false(serve_utf8_valid("\xed\xa0\x80", 3));     /* surrogate D800 */
    assert_false(serve_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    assert_false(serve_utf8_valid("\xff", 1));
    assert_false(serve_utf8_valid("a\0b", 3)); /* NUL: the JSON writer takes C strings */
}

static void test_utf8_sanitize(void **state)
{
    (void)state;
    struct serve_buf b = {0};
    assert_int_equal(serve_utf8_sanitize(&b,
                                         "a\xff"
                                         "b\xc3",
                                         4),
                     0);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data,
                        "a\xef\xbf\xbd"
                        "b\xef\xbf\xbd",
                        8);
    b.len = 0;
    assert_int_equal(serve_utf8_sanitize(&b, "x\0y\xc3\xa9", 5), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "x\xef\xbf\xbdy\xc3\xa9", 7);
    assert_true(serve_utf8_valid(b.data, b.len));
    serve_buf_fini(&b);
}

/* Runs pieces through the matcher; returns the joined output (caller frees) and *hit. */
static char *run_stop(const char *const *stops, size_t n_stops, const char *const *pieces,
                      const size_t *lens, size_t n_pieces, bool *hit)
{
    struct serve_stop s;
    assert_int_equal(serve_stop_init(&s, stops, n_stops), 0);
    struct serve_buf out = {0};
    size_t max_stop = 0;
    for (size_t i = 0; i < n_stops; i++)
        if (strlen(stops[i]) > max_stop)
            max_stop = strlen(stops[i]);
    size_t i = 0;
    for (; i < n_pieces && !s.hit; i++) {
        size_t off, len;
        assert_int_equal(serve_stop_push(&s, pieces[i], lens[i], &off, &len), 0);
        assert_int_equal(off, out.len);
        assert_true(serve_utf8_valid(s.text.data + off, len));
        assert_int_equal(serve_buf_append(&out, s.text.data + off, len), 0);
        if (!s.hit) {
            /* Held back: at most a stop prefix (max_stop - 1) or an incomplete character (3). */
            size_t held = s.text.len - s.emitted;
            assert_true(held <= (max_stop ? max_stop - 1 : 0) || held <= 3);
        }
    }
    *hit = s.hit;
    if (!s.hit) {
        size_t off, len;
        serve_stop_flush(&s, &off, &len);
        assert_int_equal(serve_buf_append(&out, s.text.data + off, len), 0);
    }
    serve_stop_fini(&s);
    assert_int_equal(serve_buf_reserve(&out, 0), 0);
    return out.data;
}

/* The naive reference described at the top. */
static char *reference(const char *const *stops, size_t n_stops, const char *const *pieces,
                       const size_t *lens, size_t n_pieces, bool *hit)
{
    struct serve_buf t = {0};
    *hit = false;
    for (size_t i = 0; i < n_pieces && !*hit; i++) {
        assert_int_equal(serve_buf_append(&t, pieces[i], lens[i]), 0);
        size_t first = SIZE_MAX;
        for (size_t k = 0; k < n_stops; k++) {
            if (!stops[k][0])
                continue;
            const char *p = strstr(t.data, stops[k]);
            if (p && (size_t)(p - t.data) < first)
                first = (size_t)(p - t.data);
        }
        if (first != SIZE_MAX) {
            *hit = true;
            t.len = first;
            t.data[first] = '\0';
        }
    }
    assert_int_equal(serve_buf_reserve(&t, 0), 0);
    return t.data;
}

static void check_case(const char *const *stops, size_t n_stops, const char *const *pieces,
                       size_t n_pieces)
{
    size_t lens[64];
    assert_true(n_pieces <= 64);
    for (size_t i = 0; i < n_pieces; i++)
        lens[i] = strlen(pieces[i]);
    bool hit, ref_hit;
    char *got = run_stop(stops, n_stops, pieces, lens, n_pieces, &hit);
    char *want = reference(stops, n_stops, pieces, lens, n_pieces, &ref_hit);
    assert_string_equal(got, want);
    assert_int_equal(hit, ref_hit);
    free(got);
    free(want);
}

static void test_stop_examples(void **state)
{
    (void)state;
    /* No stop strings: everything comes out. */
    const char *p1[] = {"Hello", ",", " world"};
    check_case(NULL, 0, p1, 3);
    /* A stop string inside one piece. */
    const char *s1[] = {"wor"};
    check_case(s1, 1, p1, 3);
    /* A stop string spread over pieces, and a false start ("wa") released later. */
    const char *s2[] = {"world"};
    const char *p2[] = {"a w", "a w", "or", "l", "d!"};
    check_case(s2, 1, p2, 5);
    /* The earliest of several stop strings wins; an empty one is ignored. */
    const char *s3[] = {"", "ld", "o w"};
    check_case(s3, 3, p1, 3);
    /* A stop string that never completes is released at the end. */
    const char *s4[] = {"world!"};
    check_case(s4, 1, p1, 3);
    /* A stop string right at the start gives nothing. */
    const char *s5[] = {"He"};
    check_case(s5, 1, p1, 3);
    /* Characters split over pieces (byte tokens) come out whole. */
    const char *p6[] = {"caf", "\xc3", "\xa9 ", "\xf0\x9f", "\x98", "\x80", "!"};
    check_case(NULL, 0, p6, 7);
    const char *s6[] = {"\xc3\xa9 \xf0\x9f\x98\x81"}; /* shares a prefix with the text */
    check_case(s6, 1, p6, 7);
    /* Overlapping stop strings: the one that completes first ends the text. */
    const char *s7[] = {"abcd", "bc"};
    const char *p7[] = {"x", "a", "b", "c", "d"};
    check_case(s7, 2, p7, 5);
}

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15ull;
    uint64_t z = *s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Random texts over a tiny alphabet (so partial matches are frequent), split into random pieces
 * at byte level (so characters are split too), with random stop strings. */
static void test_stop_random(void **state)
{
    (void)state;
    static const char *const alphabet[] = {"a", "b", " ", "\xc3\xa9", "\xe2\x82\xac"};
    uint64_t rng = 42;
    for (int iter = 0; iter < 20000; iter++) {
        char text[128] = "";
        size_t tlen = 0;
        int nchars = 1 + (int)(rng_next(&rng) % 24);
        for (int i = 0; i < nchars; i++) {
            const char *c = alphabet[rng_next(&rng) % 5];
            memcpy(text + tlen, c, strlen(c));
            tlen += strlen(c);
        }
        text[tlen] = '\0';

        char piece_buf[64][16];
        const char *pieces[64];
        size_t n_pieces = 0;
        for (size_t at = 0; at < tlen && n_pieces < 64;) {
            size_t n = 1 + rng_next(&rng) % 5;
            if (n > tlen - at)
                n = tlen - at;
            memcpy(piece_buf[n_pieces], text + at, n);
            piece_buf[n_pieces][n] = '\0';
            pieces[n_pieces] = piece_buf[n_pieces];
            n_pieces++;
            at += n;
        }

        char stop_buf[3][32];
        const char *stops[3];
        size_t n_stops = rng_next(&rng) % 4;
        for (size_t k = 0; k < n_stops; k++) {
            size_t len = 0;
            int n = 1 + (int)(rng_next(&rng) % 4);
            for (int i = 0; i < n; i++) {
                const char *c = alphabet[rng_next(&rng) % 5];
                memcpy(stop_buf[k] + len, c, strlen(c));
                len += strlen(c);
            }
            stop_buf[k][len] = '\0';
            stops[k] = stop_buf[k];
        }
        check_case(stops, n_stops, pieces, n_pieces);
    }
}

static void test_buf_printf(void **state)
{
    (void)state;
    struct serve_buf b = {0};
    for (int i = 0; i < 1000; i++)
        assert_int_equal(serve_buf_printf(&b, "%d,", i), 0);
    assert_int_equal(b.len, 10 * 2 + 90 * 3 + 900 * 4);
    assert_memory_equal(b.data + b.len - 4, "999,", 4);
    assert_int_equal(b.data[b.len], '\0');
    serve_buf_fini(&b);
    assert_null(b.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_incomplete_tail), cmocka_unit_test(test_utf8_valid),
        cmocka_unit_test(test_utf8_sanitize),        cmocka_unit_test(test_stop_examples),
        cmocka_unit_test(test_stop_random),          cmocka_unit_test(test_buf_printf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
