/* A stand-in libcufile.so.0 for test_gds_config: it records, at the moment it is loaded, the
 * cuFile configuration a real libcufile would read (CUFILE_ENV_PATH_JSON and that file's text),
 * by appending them to the file named by NVL_TEST_CUFILE_CAPTURE. Its entry points fail: the
 * test only probes. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

struct stub_error {
    int err;
    int cu_err;
};

#define STUB_ERR_INTERNAL 5030

__attribute__((constructor)) static void stub_loaded(void)
{
    const char *capture = getenv("NVL_TEST_CUFILE_CAPTURE");
    const char *json = getenv("CUFILE_ENV_PATH_JSON");
    FILE *out, *in;
    char buf[4096];
    size_t n;

    if (!capture)
        return;
    out = fopen(capture, "a");
    if (!out)
        return;
    fprintf(out, "env=%s\n", json ? json : "(unset)");
    in = json ? fopen(json, "r") : NULL;
    while (in && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        fwrite(buf, 1, n, out);
    if (in)
        fclose(in);
    fprintf(out, "\n--\n");
    fclose(out);
}

struct stub_error cuFileDriverOpen(void)
{
    return (struct stub_error){STUB_ERR_INTERNAL, 0};
}

struct stub_error cuFileDriverClose(void)
{
    return (struct stub_error){0, 0};
}

struct stub_error cuFileHandleRegister(void **fh, void *descr)
{
    (void)descr;
    *fh = NULL;
    return (struct stub_error){STUB_ERR_INTERNAL, 0};
}

void cuFileHandleDeregister(void *fh)
{
    (void)fh;
}

ssize_t cuFileRead(void *fh, void *buf, size_t size, off_t file_off, off_t buf_off)
{
    (void)fh;
    (void)buf;
    (void)size;
    (void)file_off;
    (void)buf_off;
    return -STUB_ERR_INTERNAL;
}
