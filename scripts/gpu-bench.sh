#!/usr/bin/env bash
# The GPU I/O engine's tests and benchmarks, for a machine with a CUDA GPU. Builds what it needs
# (or takes prebuilt binaries), runs every GPU test and benchmark, and prints a short table last.
#
#   scripts/gpu-bench.sh [--prebuilt DIR] [--out DIR] [--quick] [--disk-file PATH] [--steps LIST]
#   scripts/gpu-bench.sh --make-prebuilt DIR [--with-cufile]
#
#   --prebuilt DIR   use DIR/bin/* and DIR/lib (LD_LIBRARY_PATH) instead of building
#   --make-prebuilt DIR  build here (needs nvcc and the project's dependencies, see
#                    scripts/install-deps.sh) and collect the programs and the shared libraries
#                    a bare CUDA machine lacks into DIR, then exit; carry DIR to the GPU machine
#   --with-cufile    with --make-prebuilt: also fetch libcufile from PyPI's nvidia-cufile wheel
#                    (pip download) into DIR/cufile; the run then repeats the gds steps with it
#                    (*_cufile_wheel), next to the machine's own libcufile
#   --out DIR        keep logs there (default: a temporary directory)
#   --quick          shorter runs, and of the model step only its tests and the streaming from
#                    the sim (the whole script in about 5 minutes on an H100)
#   --disk-file PATH the file on the machine's real disk for the file/gds/dd comparison
#                    (default /var/tmp/nvl-bench.img, made with random data when missing)
#   --steps LIST     run only these steps (comma-separated names, as in the table)
#   --model-steps LIST  the steps of scripts/gpu-model-bench.sh to run (default: all of them;
#                    e.g. tests,resident,offload,stream,files leaves out the ncu profile and 70B)
#   --budget S       wall-time budget in seconds (default 570, under the GPU machine's 10-minute
#                    command limit): steps that would start later are skipped, and the model
#                    step is stopped at it, so the summary table is always printed
#
# What runs, in order (each step under a time limit so a hang is reported, never waited out):
#   1. test_engine_cmd, test_engine          engine unit tests; the second on the GPU vs the sim
#      test_backend_gpu_nvme, test_loader_gpu, test_backend_gds   the loader's GPU paths
#   2. test_layer_loader --backend gpu-nvme  --sim-mem and --sim FILE, 669 MiB, 3/3 expected,
#                                            plus device and host destinations
#   3. bench_engine null                     engine overhead, 1/2/4/8/16 queues, 4 KiB and MDTS
#   4. bench_engine layer                    669 MiB from a memory sim, with memcpy and H2D
#   5. bench_engine layer --sim-opts bw=...  drive emulation at 3.35 and 7 GB/s
#   6. bench_engine cpu                      CPU time per GB, gpu-nvme vs file
#   7. file and gds backends on the real disk next to dd iflag=direct; before them the udev
#      database cuFile needs is prepared (udevd when the machine has it, else a labelled record
#      for the test file's block device: see "The machine's real disk" in docs/benchmarks.md)
#   8. test_crc32c_gpu, and image_*: a model written with nvload-setup write --sim, run through
#      the GPU engine with --verify (CRC32C on the GPU) == the file run; a corrupted block named
#      (scripts/gpu-image-check.sh; issue 6 section 5)
#   9. model: scripts/gpu-model-bench.sh (GPU inference), then one summary table of every step
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PREBUILT=""
MAKE_PREBUILT=""
WITH_CUFILE=0
STEPS=""
MODEL_STEPS=""
BUDGET=570
OUT=""
QUICK=0
DISK_FILE=/var/tmp/nvl-bench.img
while [ $# -gt 0 ]; do
    case "$1" in
    --prebuilt) PREBUILT=$(cd "$2" && pwd); shift 2 ;;
    --make-prebuilt) MAKE_PREBUILT=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --disk-file) DISK_FILE=$2; shift 2 ;;
    --with-cufile) WITH_CUFILE=1; shift ;;
    --steps) STEPS=",$2,"; shift 2 ;;
    --model-steps) MODEL_STEPS=$2; shift 2 ;;
    --budget) BUDGET=$2; shift 2 ;;
    -h | --help) sed -n '2,44p' "$0"; exit 0 ;;
    *) echo "gpu-bench: unknown argument $1" >&2; exit 2 ;;
    esac
done
PROGRAMS=(tests/device/test_engine_cmd tests/host/test_engine tests/host/test_backend_gpu_nvme
    tests/loader/test_loader_gpu tests/loader/test_backend_gds tools/bench/bench_engine
    tools/test_layer_loader/test_layer_loader tests/image/test_crc32c_gpu
    tools/nvload-setup/nvload-setup)
# Built too, but carried in DIR/model by gpu-model-bench.sh --make-prebuilt.
MODEL_PROGRAMS=(tools/nvinfer/nvinfer tools/nvgguf/nvgguf)

build() { # build BUILD_DIR LOG: configures with CUDA and builds the programs above
    if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
        export PATH=/usr/local/cuda/bin:$PATH
    fi
    cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNVL_WITH_CUDA=ON >>"$2" 2>&1 ||
        { echo "gpu-bench: configure failed (see $2)"; exit 1; }
    cmake --build "$1" -j"$(nproc)" --target "${PROGRAMS[@]##*/}" "${MODEL_PROGRAMS[@]##*/}" \
        >>"$2" 2>&1 ||
        { echo "gpu-bench: build failed (see $2)"; exit 1; }
}

if [ -n "$MAKE_PREBUILT" ]; then
    BUILD=${BUILD_DIR:-build-gpu}
    mkdir -p "$MAKE_PREBUILT/bin" "$MAKE_PREBUILT/lib"
    build "$BUILD" "$MAKE_PREBUILT/build.log"
    for t in "${PROGRAMS[@]}"; do
        cp "$BUILD/$t" "$MAKE_PREBUILT/bin/"
    done
    strip --strip-debug "$MAKE_PREBUILT/bin/test_crc32c_gpu" "$MAKE_PREBUILT/bin/nvload-setup"
    # Libraries the CUDA image may lack or hold in another version.
    for lib in libcudart.so.13 liburing.so.2 libcmocka.so.0 libpciaccess.so.0 libz.so.1; do
        path=$(ldd "$MAKE_PREBUILT/bin/test_engine" "$MAKE_PREBUILT/bin/bench_engine" \
            "$MAKE_PREBUILT/bin/nvload-setup" |
            awk -v l="$lib" '$1 == l { print $3; exit }')
        [ -n "$path" ] && cp -L "$path" "$MAKE_PREBUILT/lib/"
    done
    if [ $WITH_CUFILE = 1 ]; then
        wheels=$(mktemp -d)
        python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
            --platform manylinux2014_x86_64 -d "$wheels" nvidia-cufile >>"$MAKE_PREBUILT/build.log" 2>&1 ||
            { echo "gpu-bench: pip download nvidia-cufile failed"; exit 1; }
        mkdir -p "$MAKE_PREBUILT/cufile"
        unzip -q -o -j "$wheels"/nvidia_cufile-*.whl '*/lib/libcufile.so.0' -d "$MAKE_PREBUILT/cufile"
        basename "$wheels"/nvidia_cufile-*.whl >"$MAKE_PREBUILT/cufile/WHEEL"
        rm -rf "$wheels"
    fi
    # The small model of the image steps (the bigger ones are carried separately, if at all).
    mkdir -p "$MAKE_PREBUILT/models"
    for d in "$ROOT/../shared/models" "$ROOT/.cache/models" "$ROOT/.jdev"; do
        if [ -e "$d/stories260K.gguf" ]; then
            cp "$d/stories260K.gguf" "$MAKE_PREBUILT/models/"
            break
        fi
    done
    # The model runtime's programs (GPU inference, scripts/gpu-model-bench.sh) in DIR/model.
    BUILD_DIR=$BUILD "$ROOT/scripts/gpu-model-bench.sh" --make-prebuilt "$MAKE_PREBUILT/model" ||
        exit 1
    echo "gpu-bench: programs and libraries in $MAKE_PREBUILT"
    exit 0
fi

OUT=${OUT:-$(mktemp -d /tmp/nvl-gpu-bench.XXXXXX)}
mkdir -p "$OUT"
LOG=$OUT/gpu-bench.log
: >"$LOG"

if [ -n "$PREBUILT" ]; then
    BIN=$PREBUILT/bin
    export LD_LIBRARY_PATH=$PREBUILT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
else
    BUILD=${BUILD_DIR:-build-gpu}
    build "$BUILD" "$LOG"
    BIN=$OUT/bin
    mkdir -p "$BIN"
    for t in "${PROGRAMS[@]}" "${MODEL_PROGRAMS[@]}"; do
        cp "$BUILD/$t" "$BIN/"
    done
fi
# nvinfer and nvgguf: with the model runtime's programs when prebuilt.
MBIN=$BIN
if [ -n "$PREBUILT" ] && [ -x "$PREBUILT/model/bin/nvinfer" ]; then
    MBIN=$PREBUILT/model/bin
    export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$PREBUILT/model/lib
fi
T_START=$(date +%s)

# libcufile for the gds backend: the CUDA toolkit's, or the one pip installs with PyTorch.
if ! ldconfig -p 2>/dev/null | grep -q libcufile; then
    for d in /usr/local/cuda/lib64 $(python3 -c 'import nvidia.cufile, os; print(os.path.dirname(nvidia.cufile.__file__) + "/lib")' 2>/dev/null); do
        if ls "$d"/libcufile.so* >/dev/null 2>&1; then
            export LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
            break
        fi
    done
fi

GPU=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
DATE=$(date -u +%Y-%m-%d)
echo "gpu-bench: $GPU, $DATE, $(nproc) CPUs, logs in $OUT"
# What the gds backend will meet: which libcufile, nvidia-fs, the udev database cuFile reads.
CUFILE_LIB=$(for d in ${LD_LIBRARY_PATH//:/ }; do ls "$d"/libcufile.so.0 2>/dev/null; done | head -1)
CUFILE_LIB=${CUFILE_LIB:-$(ldconfig -p 2>/dev/null | awk '/libcufile.so.0/ { print $NF; exit }')}
echo "gpu-bench: libcufile ${CUFILE_LIB:-none}$([ -n "$CUFILE_LIB" ] &&
    printf ' (%s)' "$(readlink -f "$CUFILE_LIB" | xargs basename)")," \
    "nvidia-fs $([ -e /proc/driver/nvidia-fs/version ] && echo loaded || echo absent)," \
    "/run/udev/data $([ -d /run/udev/data ] && echo present || echo absent)," \
    "/etc/cufile.json $([ -e /etc/cufile.json ] && echo present || echo absent)" | tee -a "$LOG"

declare -a STEP_NAMES STEP_RESULTS STEP_SECS
step() { # step NAME LIMIT_S CMD...: runs CMD with a limit, logs it, records pass/fail
    local name=$1 limit=$2 rc t0
    shift 2
    if [ -n "$STEPS" ] && [[ $STEPS != *",$name,"* ]]; then
        return 0
    fi
    if [ $(($(date +%s) - T_START)) -gt "$BUDGET" ]; then
        STEP_NAMES+=("$name") STEP_RESULTS+=("not run (budget)") STEP_SECS+=(0)
        return 0
    fi
    echo "== $name: $*" | tee -a "$LOG"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.out" 2>&1
    rc=$?
    STEP_SECS+=($(($(date +%s) - t0)))
    cat "$OUT/$name.out" >>"$LOG"
    tail -n 4 "$OUT/$name.out"
    case $rc in
    0) STEP_RESULTS+=("ok") ;;
    77) STEP_RESULTS+=("skipped") ;;
    124 | 137) STEP_RESULTS+=("TIMEOUT") ;;
    *) STEP_RESULTS+=("FAIL($rc)") ;;
    esac
    STEP_NAMES+=("$name")
    return 0
}

LAYER=669
SECS=2
REPS=5
if [ $QUICK = 1 ]; then
    LAYER=64
    SECS=0.5
    REPS=2
fi
SIMFILE=/var/tmp/nvl-sim.img

# The real disk: a file of random data, larger than the layer.
if [ ! -f "$DISK_FILE" ] || [ "$(stat -c %s "$DISK_FILE")" -lt $(((LAYER + 64) << 20)) ]; then
    head -c $(((LAYER + 64) << 20)) /dev/urandom >"$DISK_FILE"
    sync
fi
# cuFile registers a file only where it finds the udev properties of the file's block device
# (/run/udev/data), which the GPU machine's microVM lacks (docs/benchmarks.md).
udev_prepare() {
    local dev maj min fstype rec
    dev=$(stat -c '%Hd:%Ld' "$DISK_FILE" 2>/dev/null) || return 0
    maj=${dev%:*} min=${dev#*:}
    rec=/run/udev/data/b$maj:$min
    if [ -e "$rec" ]; then
        echo "gpu-bench: udev: $rec present (ID_FS_USAGE=$(sed -n 's/^E:ID_FS_USAGE=//p' "$rec"))"
        return 0
    fi
    local udevd
    udevd=$(command -v systemd-udevd || ls /lib/systemd/systemd-udevd /usr/lib/systemd/systemd-udevd 2>/dev/null | head -1)
    if [ -n "$udevd" ] && command -v udevadm >/dev/null; then
        echo "gpu-bench: udev: starting $udevd, udevadm trigger --action=add, udevadm settle"
        "$udevd" --daemon && udevadm trigger --action=add && udevadm settle -t 30
        [ -e "$rec" ] && { echo "gpu-bench: udev: $rec written by udevd"; return 0; }
        echo "gpu-bench: udev: udevd wrote no record for $maj:$min"
    fi
    # BENCHMARK-ENVIRONMENT STEP: no udevd on this machine. Write the record udevd's blkid
    # builtin would write for the filesystem under the test file, so that cuFile can describe
    # the volume; nothing in nvload reads it.
    fstype=$(findmnt -n -o FSTYPE -T "$DISK_FILE" 2>/dev/null ||
        awk -v d="$maj:$min" '$3 == d { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i + 1); exit } }' /proc/self/mountinfo)
    [ -d /run/udev ] || UDEV_DIRS="/run/udev/data /run/udev"
    [ -d /run/udev/data ] || UDEV_DIRS=${UDEV_DIRS:-/run/udev/data}
    mkdir -p /run/udev/data || return 0
    {
        echo "I:$(awk '{ printf "%.0f", $1 * 1000000 }' /proc/uptime)"
        echo "E:ID_FS_TYPE=${fstype:-ext4}"
        echo "E:ID_FS_USAGE=filesystem"
        uuid=$(blkid -s UUID -o value "/dev/block/$maj:$min" 2>/dev/null) && [ -n "$uuid" ] &&
            echo "E:ID_FS_UUID=$uuid"
        echo "G:systemd"
    } >"$rec"
    UDEV_WRITTEN=$rec
    echo "gpu-bench: udev: BENCHMARK-ENVIRONMENT STEP: no udevd here; wrote $rec (the udev" \
        "record of the block device $maj:$min holding $DISK_FILE: $(grep -c . "$rec") lines," \
        "ID_FS_TYPE=${fstype:-ext4}, ID_FS_USAGE=filesystem); removed at exit"
}
UDEV_WRITTEN="" UDEV_DIRS=""
# What the benchmark-environment step wrote goes again at exit: the machine is left as found.
trap '[ -n "$UDEV_WRITTEN" ] && rm -f "$UDEV_WRITTEN" && for d in $UDEV_DIRS; do rmdir "$d"; done' EXIT
if [ -z "$STEPS" ] || [[ $STEPS == *",tll_gds_disk,"* ]] || [[ $STEPS == *",test_backend_gds,"* ]] ||
    [[ $STEPS == *",model,"* ]]; then
    udev_prepare >"$OUT/udev.out" 2>&1
    tee -a "$LOG" <"$OUT/udev.out"
fi
step test_engine_cmd 120 "$BIN/test_engine_cmd"
step test_engine 260 "$BIN/test_engine"
step test_backend_gpu_nvme 260 "$BIN/test_backend_gpu_nvme"
step test_loader_gpu 200 "$BIN/test_loader_gpu"
step test_backend_gds 200 "$BIN/test_backend_gds"
step tll_gpu_sim_mem 300 "$BIN/test_layer_loader" --backend gpu-nvme --sim-mem "$LAYER"
step tll_gpu_sim_file 300 "$BIN/test_layer_loader" --backend gpu-nvme --sim "$SIMFILE" "$LAYER"
step tll_gpu_device 150 "$BIN/test_layer_loader" --backend gpu-nvme --dst device --sim-mem 256
step tll_gpu_host 150 "$BIN/test_layer_loader" --backend gpu-nvme --dst host --sim-mem 256
step bench_null 300 "$BIN/bench_engine" null --queues 1,2,4,8,16 --seconds "$SECS"
step bench_layer 300 "$BIN/bench_engine" layer --mib "$LAYER" --queues 8 --reps "$REPS"
step bench_bw335 300 "$BIN/bench_engine" layer --mib "$LAYER" --queues 8 --reps "$REPS" \
    --sim-opts bw=3.35GB/s
step bench_bw7 300 "$BIN/bench_engine" layer --mib "$LAYER" --queues 8 --reps "$REPS" \
    --sim-opts bw=7GB/s

step bench_cpu 300 "$BIN/bench_engine" cpu --file "$DISK_FILE" --mib "$LAYER" --reps "$REPS"
DISK_MB=$(((LAYER + 64)))
step dd_direct 120 dd if="$DISK_FILE" of=/dev/null bs=4M iflag=direct count=$((DISK_MB / 4))
step tll_file_disk 300 "$BIN/test_layer_loader" --backend file --file "$DISK_FILE" "$LAYER"
step tll_gds_disk 300 "$BIN/test_layer_loader" --backend gds --file "$DISK_FILE" "$LAYER"
if ! grep -q "passed" "$OUT/tll_gds_disk.out" 2>/dev/null && [ -e "$OUT/tll_gds_disk.out" ]; then
    # cuFile's hint for file systems it does not list as supported.
    step tll_gds_disk_experimental_fs 300 env CUFILE_EXPERIMENTAL_FS=1 \
        "$BIN/test_layer_loader" --backend gds --file "$DISK_FILE" "$LAYER"
fi
if [ -n "$PREBUILT" ] && [ -e "$PREBUILT/cufile/libcufile.so.0" ]; then
    echo "gpu-bench: *_cufile_wheel steps use $(cat "$PREBUILT/cufile/WHEEL")" | tee -a "$LOG"
    step test_backend_gds_cufile_wheel 200 env LD_LIBRARY_PATH="$PREBUILT/cufile:$LD_LIBRARY_PATH" \
        "$BIN/test_backend_gds"
    step tll_gds_disk_cufile_wheel 300 env LD_LIBRARY_PATH="$PREBUILT/cufile:$LD_LIBRARY_PATH" \
        "$BIN/test_layer_loader" --backend gds --file "$DISK_FILE" "$LAYER"
fi

# Issue 6 section 5: a drive image served by the sim, through the GPU engine, --verify on the GPU.
step test_crc32c_gpu 120 "$BIN/test_crc32c_gpu"
STORIES=""
for d in "$PREBUILT/models" "$ROOT/../shared/models" "$ROOT/.cache/models" "$ROOT/.jdev"; do
    [ -e "$d/stories260K.gguf" ] && { STORIES=$d/stories260K.gguf; break; }
done
if [ -n "$STORIES" ]; then
    step image_stories260K 120 "$ROOT/scripts/gpu-image-check.sh" "$MBIN/nvinfer" \
        "$BIN/nvload-setup" "$STORIES" "Once upon a time" 64
    # A requantized model: other block types through the same path.
    if "$MBIN/nvgguf" quantize "$STORIES" "$OUT/stories260K-q8_0.gguf" q8_0 >>"$LOG" 2>&1; then
        step image_stories260K_q8_0 120 "$ROOT/scripts/gpu-image-check.sh" "$MBIN/nvinfer" \
            "$BIN/nvload-setup" "$OUT/stories260K-q8_0.gguf" "Once upon a time" 64
    fi
fi
SMOL10=$(ls "$ROOT"/.jdev/SmolLM2*.gguf "$PREBUILT"/models/SmolLM2*.gguf "$ROOT"/.cache/models/SmolLM2*.gguf 2>/dev/null | head -1)
if [ -n "$SMOL10" ]; then
    step image_smollm2 200 "$ROOT/scripts/gpu-image-check.sh" "$MBIN/nvinfer" "$BIN/nvload-setup" \
        "$SMOL10" "The capital of France" 16
fi

# ---- the table -------------------------------------------------------------------------
kv() { # kv FILE KEY: value of KEY= in the RESULT lines of FILE (one per line)
    grep '^RESULT' "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p"
}
tll_rate() { # the throughput figure test_layer_loader printed for its test N
    grep -E "^test $2 " "$1" 2>/dev/null | grep -oE '[0-9.]+ GB/s' | head -1
}
{
    echo
    echo "GPU I/O engine, $GPU, $DATE"
    echo
    echo "| step | result |"
    echo "|---|---|"
    for i in "${!STEP_NAMES[@]}"; do
        n=${STEP_NAMES[$i]}
        echo "| $n | ${STEP_RESULTS[$i]} $(grep -oE '^[0-9]+/[0-9]+ passed' "$OUT/$n.out" | tail -1) |"
    done
    echo
    echo "| queues | 4 KiB IOPS (null sim) | MDTS GB/s (null sim) | cmds per SQ doorbell |"
    echo "|---|---|---|---|"
    paste -d' ' <(kv "$OUT/bench_null.out" queues) <(kv "$OUT/bench_null.out" iops_4k) \
        <(kv "$OUT/bench_null.out" gbps_mdts) <(kv "$OUT/bench_null.out" cmds_per_sq_doorbell) |
        while read -r q i g d; do
            awk -v q="$q" -v i="$i" -v g="$g" -v d="$d" \
                'BEGIN { printf "| %s | %.2f M | %s | %s |\n", q, i / 1e6, g, d }'
        done
    echo
    echo "| layer read (${LAYER} MiB) | GB/s (median) | best | configured | ratio |"
    echo "|---|---|---|---|---|"
    for f in bench_layer bench_bw335 bench_bw7; do
        echo "| $f | $(kv "$OUT/$f.out" gbps_median) | $(kv "$OUT/$f.out" gbps_best) |" \
            "$(kv "$OUT/$f.out" configured_gbps) | $(kv "$OUT/$f.out" ratio) |"
    done
    echo "| host memcpy | $(kv "$OUT/bench_layer.out" memcpy_gbps) | | | |"
    echo "| pinned H2D | $(kv "$OUT/bench_layer.out" h2d_pinned_gbps) | | | |"
    echo
    echo "| CPU s per GB | gpu-nvme $(kv "$OUT/bench_cpu.out" gpu_nvme_cpu_s_per_gb) |" \
        "file $(kv "$OUT/bench_cpu.out" file_cpu_s_per_gb) |"
    echo
    echo "| real disk ($DISK_FILE) | GB/s |"
    echo "|---|---|"
    echo "| dd iflag=direct bs=4M | $(grep -oE '[0-9.]+ [GM]B/s' "$OUT/dd_direct.out" | tail -1) |"
    echo "| file backend, test 2 | $(tll_rate "$OUT/tll_file_disk.out" 2) |"
    echo "| gds backend, test 2 | $(tll_rate "$OUT/tll_gds_disk.out" 2) |"
    echo "| gds backend with the wheel's libcufile, test 2 | $(tll_rate "$OUT/tll_gds_disk_cufile_wheel.out" 2) |"
    grep -ih "compat\|gds:" "$OUT/tll_gds_disk.out" "$OUT/tll_gds_disk_cufile_wheel.out" 2>/dev/null |
        head -4 | sed 's/^/    /'
} | tee "$OUT/table.md"

# GPU inference (issue 7): scripts/gpu-model-bench.sh runs the model runtime's tests and
# benchmarks (synthetic 8B and 70B models) and prints its own table; step name "model".
if [ -z "$STEPS" ] || [[ $STEPS == *",model,"* ]]; then
    MODEL_ARGS=(--out "$OUT/model")
    [ -n "$PREBUILT" ] && [ -d "$PREBUILT/model" ] && MODEL_ARGS+=(--prebuilt "$PREBUILT/model")
    # The correctness tests' models: stories260K and a SmolLM2 (or a cut of it, .jdev) found above.
    mkdir -p "$OUT/models"
    for f in "$STORIES" "$SMOL10"; do
        [ -n "$f" ] && ln -sf "$f" "$OUT/models/"
    done
    MODEL_ARGS+=(--models "$OUT/models")
    [ $QUICK = 1 ] && MODEL_ARGS+=(--quick)
    [ $QUICK = 1 ] && [ -z "$MODEL_STEPS" ] && MODEL_STEPS=tests,stream
    [ -n "$MODEL_STEPS" ] && MODEL_ARGS+=(--steps "$MODEL_STEPS")
    t0=$(date +%s)
    left=$((BUDGET + 20 - (t0 - T_START)))
    [ $left -lt 60 ] && left=60
    timeout --kill-after=5 $left "$ROOT/scripts/gpu-model-bench.sh" "${MODEL_ARGS[@]}"
    rc=$?
    STEP_NAMES+=("model${MODEL_STEPS:+ ($MODEL_STEPS)}")
    STEP_SECS+=($(($(date +%s) - t0)))
    nfail=$(grep -ciE "FAIL|DIFFERENT" "$OUT/model/table.md" 2>/dev/null)
    if [ $rc = 124 ] || [ $rc = 137 ]; then
        STEP_RESULTS+=("TIMEOUT (budget; see $OUT/model)")
    elif [ -s "$OUT/model/table.md" ] && [ "${nfail:-0}" = 0 ]; then
        STEP_RESULTS+=("ok ($(grep -c '^|' "$OUT/model/table.md") rows)")
    else
        STEP_RESULTS+=("FAIL (${nfail:-no table}: see the table above)")
    fi
fi

# ---- one short table last: every step, its result and time ----------------------------------
{
    echo
    echo "Summary: $GPU, $DATE, $(($(date +%s) - T_START)) s in all, logs in $OUT"
    echo
    echo "| step | result | s |"
    echo "|---|---|---|"
    for i in "${!STEP_NAMES[@]}"; do
        n=${STEP_NAMES[$i]}
        extra=$(grep -oE '^[0-9]+/[0-9]+ passed' "$OUT/$n.out" 2>/dev/null | tail -1)
        case $n in
        image_*) extra="$(grep -c '^PASS' "$OUT/$n.out") PASS, $(grep -c '^FAIL' "$OUT/$n.out") FAIL" ;;
        tll_gds*) grep -qi "compatibility mode" "$OUT/$n.out" 2>/dev/null && extra="$extra, compatibility mode" ;;
        esac
        echo "| $n | ${STEP_RESULTS[$i]}${extra:+ ($extra)} | ${STEP_SECS[$i]} |"
        if [[ $n == image_* ]]; then # the checks themselves, one row each
            grep -E '^(PASS|FAIL) ' "$OUT/$n.out" | cut -c 1-150 | sed 's/|/:/g' |
                awk '{ r = $1; $1 = ""; printf "|  %s |%s | |\n", r, $0 }'
        fi
    done
} | tee -a "$OUT/table.md"
