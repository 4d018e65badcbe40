/* The gds backend's cuFile configuration (backend_gds.c), checked through a stand-in libcufile
 * (cufile_stub.c, found first through LD_LIBRARY_PATH) that records what a real one would read
 * when it loads: with no configuration anywhere, a private cufile.json (allow_compat_mode, a
 * private log directory) named by CUFILE_ENV_PATH_JSON before the library loads, and everything
 * removed afterwards; a configuration named by the environment is used untouched, and its
 * allow_compat_mode = false is obeyed. */
#include "loader_test_util.h"

#include <dirent.h>

static char tmpdir[256], capture[300], target[300];

static void read_file(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;

    if (f) {
        n = fread(buf, 1, len - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
}

static int count_entries(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static int setup(void **state)
{
    FILE *f;

    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "%s/nvl_gds_config_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(tmpdir));
    snprintf(capture, sizeof(capture), "%s/capture", tmpdir);
    snprintf(target, sizeof(target), "%s/target.img", tmpdir);
    f = fopen(target, "w");
    assert_non_null(f);
    fputs("some bytes", f);
    fclose(f);
    setenv("TMPDIR", tmpdir, 1);
    setenv("NVL_TEST_CUFILE_CAPTURE", capture, 1);
    unsetenv("CUFILE_ENV_PATH_JSON");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(capture);
    unlink(target);
    rmdir(tmpdir);
    return 0;
}

static int probe(char *why, size_t len)
{
    struct nvl_loader_opts o;

    nvl_loader_opts_init(&o);
    o.path = target;
    unlink(capture);
    return nvl_loader_probe(NVL_LOADER_GDS, &o, why, len);
}

static void private_config(void **state)
{
    char why[512], cap[8192], want[400];

    (void)state;
    probe(why, sizeof(why));
    read_file(capture, cap, sizeof(cap));
    if (strstr(why, "libcufile not found"))
        fail_msg("the stand-in libcufile was not loaded (LD_LIBRARY_PATH): %s", why);
    if (access("/etc/cufile.json", F_OK) == 0) {
        /* The machine's configuration applies. */
        assert_non_null(strstr(cap, "env=(unset)"));
    } else {
        /* Named before the library loaded, in a private directory under TMPDIR, logging there. */
        snprintf(want, sizeof(want), "env=%s/nvl-cufile.", tmpdir);
        assert_non_null(strstr(cap, want));
        assert_non_null(strstr(cap, "/cufile.json\n"));
        assert_non_null(strstr(cap, "\"allow_compat_mode\": true"));
        snprintf(want, sizeof(want), "\"dir\": \"%s/nvl-cufile.", tmpdir);
        assert_non_null(strstr(cap, want));
    }
    /* Nothing left behind: the variable and the directory went with the last user. */
    assert_null(getenv("CUFILE_ENV_PATH_JSON"));
    assert_int_equal(count_entries(tmpdir, "nvl-cufile."), 0);
    /* A second probe does it all again. */
    probe(why, sizeof(why));
    read_file(capture, cap, sizeof(cap));
    assert_non_null(strstr(cap, "env="));
    assert_null(getenv("CUFILE_ENV_PATH_JSON"));
    assert_int_equal(count_entries(tmpdir, "nvl-cufile."), 0);
}

static void environment_config(void **state)
{
    char why[512], cap[8192], json[320], want[400];
    FILE *f;
    int rc;

    (void)state;
    snprintf(json, sizeof(json), "%s/mine.json", tmpdir);
    f = fopen(json, "w");
    assert_non_null(f);
    fputs("{ // a comment, as cuFile allows\n"
          "  \"properties\": { \"allow_compat_mode\" :  false }\n}\n",
          f);
    fclose(f);
    setenv("CUFILE_ENV_PATH_JSON", json, 1);
    rc = probe(why, sizeof(why));
    read_file(capture, cap, sizeof(cap));
    snprintf(want, sizeof(want), "env=%s\n", json);
    assert_non_null(strstr(cap, want));
    assert_string_equal(getenv("CUFILE_ENV_PATH_JSON"), json);
    assert_int_equal(count_entries(tmpdir, "nvl-cufile."), 0);
    if (access("/proc/driver/nvidia-fs/version", F_OK) != 0) {
        /* Compatibility mode is the only mode here, and the configuration forbids it. */
        assert_int_equal(rc, -ENODEV);
        assert_non_null(strstr(why, "allow_compat_mode is false"));
        assert_non_null(strstr(why, json));
    }
    unsetenv("CUFILE_ENV_PATH_JSON");
    unlink(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(private_config),
        cmocka_unit_test(environment_config),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
