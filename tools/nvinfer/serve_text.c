/* nvinfer serve: byte buffers, UTF-8 checks and the stop-string matcher. No HTTP, no model: the
 * unit test (tests/serve/test_serve_text.c) compiles this file alone. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

int serve_buf_reserve(struct serve_buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    size_t need = b->len + extra + 1; /* room for the NUL */
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0';
    return 0;
}

int serve_buf_append(struct serve_buf *b, const void *data, size_t len)
{
    int rc = serve_buf_reserve(b, len);
    if (rc)
        return rc;
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int serve_buf_puts(struct serve_buf *b, const char *s)
{
    return serve_buf_append(b, s, strlen(s));
}

int serve_buf_printf(struct serve_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    int rc = serve_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void serve_buf_fini(struct serve_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 (RFC 3629: at most 4 bytes, no surrogates, no overlong forms) */

/* Length of the well-formed sequence at s[0..n), 0 when it is malformed (or a NUL byte), or -1
 * when it is a valid beginning that n cuts short. */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c == 0)
        return 0; /* valid UTF-8, but the JSON writer takes C strings */
    if (c < 0x80)
        return 1;
    int len;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong */
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n)
            return -1;
        unsigned char b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf))
            return 0;
    }
    return len;
}

size_t serve_utf8_incomplete_tail(const char *s, size_t len)
{
    /* A sequence is at most 4 bytes, so an incomplete one starts in the last 3. */
    size_t from = len > 3 ? len - 3 : 0;
    for (size_t i = from; i < len; i++)
        if (utf8_seq((const unsigned char *)s + i, len - i) < 0)
            return len - i;
    return 0;
}

bool serve_utf8_valid(const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        int n = utf8_seq((const unsigned char *)s + i, len - i);
        if (n <= 0)
            return false;
        i += (size_t)n;
    }
    return true;
}

int serve_utf8_sanitize(struct serve_buf *out, const char *s, size_t len)
{
    static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
    size_t i = 0, run = 0;
    while (i < len) {
        int n = utf8_seq((const unsigned char *)s + i, len - i);
        if (n > 0) {
            i += (size_t)n;
            continue;
        }
        int rc = serve_buf_append(out, s + run, i - run);
        if (!rc)
            rc = serve_buf_append(out, replacement, 3);
        if (rc)
            return rc;
        i++;
        run = i;
    }
    return serve_buf_append(out, s + run, len - run);
}

/* ------------------------------------------------------------------------------------------ */
/* Stop strings */

int serve_stop_init(struct serve_stop *s, const char *const *strs, size_t n)
{
    memset(s, 0, sizeof(*s));
    if (n == 0)
        return 0;
    s->strs = calloc(n, sizeof(*s->strs));
    s->lens = calloc(n, sizeof(*s->lens));
    if (!s->strs || !s->lens)
        goto err_free;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(strs[i]);
        if (len == 0)
            continue;
        s->strs[s->n] = strdup(strs[i]);
        if (!s->strs[s->n])
            goto err_free;
        s->lens[s->n++] = len;
    }
    return 0;

err_free:
    serve_stop_fini(s);
    return -ENOMEM;
}

void serve_stop_fini(struct serve_stop *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->strs[i]);
    free(s->strs);
    free(s->lens);
    serve_buf_fini(&s->text);
    memset(s, 0, sizeof(*s));
}

/* Length of the longest suffix of text[from..len) that is a proper prefix of a stop string. */
static size_t stop_holdback(const struct serve_stop *s, size_t from)
{
    const char *t = s->text.data;
    const size_t len = s->text.len;
    size_t hold = 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t k = s->lens[i] - 1;
        if (k > len - from)
            k = len - from;
        for (; k > hold; k--) {
            if (memcmp(t + len - k, s->strs[i], k) == 0) {
                hold = k;
                break;
            }
        }
    }
    return hold;
}

int serve_stop_push(struct serve_stop *s, const char *piece, size_t len, size_t *off,
                    size_t *out_len)
{
    *off = s->emitted;
    *out_len = 0;
    if (s->hit)
        return 0;
    int rc = serve_buf_append(&s->text, piece, len);
    if (rc)
        return rc;

    /* A stop string that ends in the new piece cannot start before `emitted`: had it started
     * there, the text from its start was a prefix of it and would have been held back. So the
     * earliest match at or after `emitted` is the first match overall. */
    const char *t = s->text.data;
    size_t first = SIZE_MAX;
    for (size_t i = 0; i < s->n; i++) {
        const char *p = memmem(t + s->emitted, s->text.len - s->emitted, s->strs[i], s->lens[i]);
        if (p && (size_t)(p - t) < first)
            first = (size_t)(p - t);
    }
    if (first != SIZE_MAX) {
        s->hit = true;
        s->text.len = first;
        s->text.data[first] = '\0';
        *out_len = first - s->emitted;
        s->emitted = first;
        return 0;
    }

    size_t hold = stop_holdback(s, s->emitted);
    size_t utf8 = serve_utf8_incomplete_tail(t + s->emitted, s->text.len - s->emitted);
    if (utf8 > hold)
        hold = utf8;
    size_t end = s->text.len - hold;
    *out_len = end - s->emitted;
    s->emitted = end;
    return 0;
}

void serve_stop_flush(struct serve_stop *s, size_t *off, size_t *out_len)
{
    *off = s->emitted;
    *out_len = s->text.len - s->emitted;
    s->emitted = s->text.len;
}
