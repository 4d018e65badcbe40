/* Options of the software NVMe controller, and a parser for the one-line form that tools accept
 * (`--sim "file=disk.img,lba=4096,mdts=5,queues=8,threads=2,bw=7GB/s,lat=80us"`). */
#ifndef NVL_SIM_OPTS_H
#define NVL_SIM_OPTS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Where the namespace's blocks live. */
enum nvl_sim_backing {
    NVL_SIM_BACKING_MEM = 0,  /* anonymous memory, or a private copy-on-write map of `path` */
    NVL_SIM_BACKING_FILE = 1, /* a file or block device; O_DIRECT where the buffers allow it */
    NVL_SIM_BACKING_NULL = 2, /* no data moves: reads leave the buffer alone, writes are dropped */
};

#define NVL_SIM_PATH_MAX 4096

struct nvl_sim_opts {
    char name[32];                /* prefix of log lines; default "sim" */
    enum nvl_sim_backing backing; /* default FILE when `path` is set, MEM otherwise */
    char path[NVL_SIM_PATH_MAX];  /* backing file or block device; "" for none */
    int read_only;                /* open `path` read-only; Write fails with Write Protected */
    int direct;                   /* try O_DIRECT for FILE (default 1) */
    uint32_t lba_size;            /* 512 or 4096 (default 512) */
    uint64_t ns_bytes;            /* namespace size; 0 = size of `path`, or 1 GiB (MEM) / 1 TiB
                                     (NULL). A regular file shorter than this is extended. */
    uint8_t mdts;               /* Identify MDTS: 2^mdts pages of 4 KiB; 0 = no limit (default 5) */
    uint16_t mqes;              /* CAP.MQES, 0-based: largest queue has mqes+1 entries (1023) */
    uint16_t max_io_queues;     /* I/O queue pairs the controller grants at most (default 16) */
    uint8_t dstrd;              /* CAP.DSTRD: doorbell stride is 4 << dstrd bytes (default 0) */
    uint8_t cap_to;             /* CAP.TO in 500 ms units (default 2) */
    uint32_t threads;           /* I/O service threads polling doorbells (default 1) */
    uint32_t ready_delay_us;    /* CC.EN -> CSTS.RDY (and back) delay (default 1000) */
    uint32_t shutdown_delay_us; /* CC.SHN -> CSTS.SHST complete delay (default 1000) */
    uint32_t idle_us;           /* longest sleep of an idle poller; 0 = spin forever (200) */
    uint64_t bw_bytes_per_s;    /* bandwidth model; 0 = unlimited */
    uint64_t lat_ns;            /* latency model: completion no sooner than arrival + lat */
    uint64_t seed;              /* seed of the fault-injection random numbers */
    char serial[21];            /* Identify SN (default "NVLSIM0001") */
    char model[41];             /* Identify MN (default "nvload software controller") */
};

/* Fills `o` with the defaults above. */
void nvl_sim_opts_init(struct nvl_sim_opts *o);

/* Applies a comma-separated `key=value` list to `o` (start from nvl_sim_opts_init). A spec with
 * no '=' is a backing file path. Keys: file, mode=mem|file|null, ro, direct, lba, size, mdts,
 * mqes, queues, dstrd, to, threads, ready_us, shutdown_us, idle_us, bw, lat, seed, sn, mn, name.
 * Sizes take K/M/G/T (binary) suffixes, bw takes B/s, KB/s, MB/s, GB/s (decimal, e.g. 3.35GB/s),
 * lat takes ns/us/ms/s. Returns 0 or -EINVAL; on error `err` (if not NULL) names the bad item. */
int nvl_sim_opts_parse(struct nvl_sim_opts *o, const char *spec, char *err, size_t err_len);

/* Checks the combination of options; called by nvl_sim_create as well. 0 or -EINVAL. */
int nvl_sim_opts_check(const struct nvl_sim_opts *o, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
