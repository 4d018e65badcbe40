/* nvload-setup: prepares an NVMe controller for nvload and gives it back.
 *
 *   sudo nvload-setup [--user NAME] BDF   unbind the kernel driver, bind vfio-pci, D0, memory +
 *                                         bus master; refuse a drive the system uses
 *   sudo nvload-setup --restore BDF       give it back to the kernel's nvme driver
 *   nvload-setup --status BDF             driver, IOMMU group and mode, who holds it
 *   nvload-setup --list                   every NVMe controller
 *   sudo nvload-setup write BDF MODEL     lay a model onto the raw drive (write.c)
 *
 * Argument parsing and output only; the work is in bind.c, usage.c and report.c. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "image.h"
#include "setup.h"

enum action { ACTION_BIND, ACTION_RESTORE, ACTION_STATUS, ACTION_LIST };

static void usage(FILE *f)
{
    fprintf(f, "usage: nvload-setup [--user NAME] BDF   prepare an NVMe controller for nvload\n"
               "       nvload-setup --restore BDF       give it back to the kernel's nvme "
               "driver\n"
               "       nvload-setup --status BDF        show its driver, IOMMU group and users\n"
               "       nvload-setup --list              list every NVMe controller\n"
               "       nvload-setup write BDF MODEL.gguf put a model on the raw drive (write "
               "--help)\n"
               "\n"
               "BDF is the controller's PCI address, e.g. 0000:01:00.0 (see --list).\n"
               "Preparing refuses a drive that is mounted, used as swap, part of an LVM/MD/dm\n"
               "volume or holding the root filesystem. It then unbinds the kernel driver,\n"
               "binds vfio-pci (IOMMU mode, or vfio's unsafe no-IOMMU mode when there is no\n"
               "IOMMU), keeps the function in D0 and enables memory space and bus mastering.\n"
               "\n"
               "options:\n"
               "  --user NAME     let user NAME open the vfio group device\n"
               "  --wait SECONDS  how long to wait for the kernel to bind (default 10)\n"
               "  -h, --help      this text\n");
}

static int bad_bdf(const char *arg)
{
    fprintf(stderr,
            "nvload-setup: error: invalid PCI address '%s': expected DDDD:BB:DD.F, e.g. "
            "0000:01:00.0 (nvload-setup --list shows the NVMe controllers)\n",
            arg);
    return 1;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"user", required_argument, NULL, 'u'},
        {"restore", no_argument, NULL, 'r'},
        {"status", no_argument, NULL, 's'},
        {"list", no_argument, NULL, 'l'},
        {"wait", required_argument, NULL, 'w'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct nvl_setup_env env;
    struct nvl_setup_bind_opts bo = {0};
    enum action action = ACTION_BIND;
    int n_actions = 0, c;
    char bdf[NVL_SETUP_BDF_LEN];

    if (argc > 1 && strcmp(argv[1], "write") == 0)
        return nvl_setup_write_main(argc - 1, argv + 1);
    nvl_setup_env_init(&env);
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            bo.user = optarg;
            break;
        case 'r':
            action = ACTION_RESTORE;
            n_actions++;
            break;
        case 's':
            action = ACTION_STATUS;
            n_actions++;
            break;
        case 'l':
            action = ACTION_LIST;
            n_actions++;
            break;
        case 'w': {
            char *end;
            long s = strtol(optarg, &end, 10);
            if (*end || s < 0 || s > 3600) {
                fprintf(stderr, "nvload-setup: error: --wait wants seconds (0-3600), not '%s'\n",
                        optarg);
                return 2;
            }
            env.wait_ms = (unsigned)s * 1000;
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (n_actions > 1) {
        fprintf(stderr, "nvload-setup: error: --restore, --status and --list exclude each other\n");
        return 2;
    }
    if (bo.user && action != ACTION_BIND) {
        fprintf(stderr, "nvload-setup: error: --user goes with preparing a controller\n");
        return 2;
    }
    int want_args = action == ACTION_LIST ? 0 : 1;
    if (argc - optind != want_args) {
        if (want_args)
            fprintf(stderr, "nvload-setup: error: give one PCI address (BDF)\n");
        else
            fprintf(stderr, "nvload-setup: error: --list takes no PCI address\n");
        usage(stderr);
        return 2;
    }
    if (want_args && nvl_setup_parse_bdf(argv[optind], bdf) != 0)
        return bad_bdf(argv[optind]);

    /* Changing bindings needs root; say so up front rather than after a partial attempt. Fake
     * trees (NVL_SYSFS_ROOT, the tests) are exempt. */
    if ((action == ACTION_BIND || action == ACTION_RESTORE) && env.real && geteuid() != 0) {
        fprintf(stderr,
                "nvload-setup: error: changing the driver of a PCI device needs root: "
                "sudo %s\n",
                argv[0]);
        return 1;
    }

    int rc = 0;
    struct nvl_setup_result res;
    switch (action) {
    case ACTION_LIST:
        rc = nvl_setup_list(&env);
        rc = rc < 0 ? rc : 0;
        break;
    case ACTION_STATUS: {
        char drv[NVL_SETUP_NAME_LEN] = "";
        rc = nvl_setup_status(&env, bdf);
        /* What the drive holds can be read only through vfio-pci, with nvload's driver. */
        if (rc == 0 && env.real && nvl_setup_driver(&env, bdf, drv, sizeof(drv)) == 0 &&
            strcmp(drv, "vfio-pci") == 0)
            nvl_setup_image_status(bdf, NULL, env.out);
        break;
    }
    case ACTION_RESTORE:
        rc = nvl_setup_restore(&env, bdf);
        break;
    case ACTION_BIND:
        rc = nvl_setup_bind(&env, bdf, &bo, &res);
        if (rc == 0)
            printf("%s: %s vfio-pci, %s group %d, %s%s\n", bdf,
                   res.already ? "already bound to" : "bound to",
                   res.noiommu ? "no-IOMMU (unsafe)" : "IOMMU", res.group, res.node,
                   res.old_driver[0] && !res.already ? "" : "");
        break;
    }
    if (rc) {
        fprintf(stderr, "nvload-setup: error: %s\n",
                env.err[0] ? env.err : strerror(rc < 0 ? -rc : rc));
        return 1;
    }
    return 0;
}
