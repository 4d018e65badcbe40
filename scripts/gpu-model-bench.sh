#!/usr/bin/env bash
# GPU inference tests and benchmarks (issue 7), for a machine with a CUDA GPU. Runs the kernel and
# forward-pass tests, then the benchmarks on synthetic models of real shapes (nvgguf synth), and
# prints one table last (also written to OUT/table.md for docs/benchmarks.md).
#
#   scripts/gpu-model-bench.sh [--prebuilt DIR] [--models DIR] [--out DIR] [--steps LIST]
#                              [--disk DIR] [--quick]
#   scripts/gpu-model-bench.sh --make-prebuilt DIR
#
#   --prebuilt DIR       DIR/bin/* and DIR/lib instead of building (see --make-prebuilt)
#   --make-prebuilt DIR  build here, collect the programs (debug info stripped) and the shared
#                        libraries a bare CUDA machine lacks into DIR, then exit
#   --models DIR         stories260K.gguf and a SmolLM2 GGUF (SmolLM2*.gguf) for the
#                        correctness tests (default: ../shared/models and .cache/models)
#   --disk DIR           where synthetic models are written (default /var/tmp/nvl-models)
#   --steps LIST         only these steps (comma-separated: tests,matvec,resident,offload,stream,files,70b)
#   --quick              fewer tokens
#
# Steps (each under a time limit, so a hang is reported and the rest still runs):
#   tests     test_kernels (every kernel vs its reference), test_gpu_forward (GPU vs CPU greedy on
#             stories260K and SmolLM2; streamed/RAM-tier placements bit-identical to resident)
#   matvec    one decode token's matrix-vector products (8B shapes, Q4_0, Q8_0, Q4_K) alone:
#             GB/s per kind of product against the device-to-device copy bandwidth (bench_matvec)
#   resident  llama3-8b shape in Q4_0, Q8_0, Q4_K: pp512 and tg128 tok/s, HBM roofline ratio
#   offload   Q4_K with 0, 8, 16 and 24 of 32 layers in VRAM, the rest from the pinned-RAM tier:
#             tok/s against the PCIe bound (host-to-device bandwidth / streamed bytes)
#   stream    Q4_K with 4 layers in VRAM, the rest streamed by the gpu-nvme engine from the
#             software controller throttled to 7 GB/s: tok/s against min(resident, 7 GB/s / bytes)
#   files     the same streaming through the file and gds backends on the machine's disk
#   70b       llama2-70b shape in Q4_K streamed from the throttled sim, a few tokens
#   profile   where a decode pass (PROFILE_TYPES, default q4_0 q4_K) and a pp512 pass
#             (PROFILE_PREFILL=0: not) spend their time (Nsight Compute, per kernel), and decode
#             speed with other matrix-vector block sizes, without PDL and without CUDA graphs
#   sass      (only when named) one gate/up matrix-vector launch under ncu --set full: stall
#             reasons, opcode mix and loop levels of its SASS (scripts/ncu-sass.py)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PREBUILT="" MAKE_PREBUILT="" MODELS="" OUT="" STEPS="" QUICK=0 DISK=/var/tmp/nvl-models
while [ $# -gt 0 ]; do
    case "$1" in
    --prebuilt) PREBUILT=$(cd "$2" && pwd); shift 2 ;;
    --make-prebuilt) MAKE_PREBUILT=$2; shift 2 ;;
    --models) MODELS=$(cd "$2" && pwd); shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --steps) STEPS=",$2,"; shift 2 ;;
    --disk) DISK=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "gpu-model-bench: unknown argument $1" >&2; exit 2 ;;
    esac
done
PROGRAMS=(tools/nvinfer/nvinfer tools/nvgguf/nvgguf tests/kernels/test_kernels
    tests/kernels/test_gpu_forward tests/kernels/test_kernels_host tools/bench/bench_matvec)

build() { # build BUILD_DIR LOG
    if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
        export PATH=/usr/local/cuda/bin:$PATH
    fi
    cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNVL_WITH_CUDA=ON >>"$2" 2>&1 ||
        { echo "gpu-model-bench: configure failed (see $2)"; exit 1; }
    cmake --build "$1" -j"$(nproc)" --target "${PROGRAMS[@]##*/}" >>"$2" 2>&1 ||
        { echo "gpu-model-bench: build failed (see $2)"; exit 1; }
}

if [ -n "$MAKE_PREBUILT" ]; then
    BUILD=${BUILD_DIR:-build-gpu}
    mkdir -p "$MAKE_PREBUILT/bin" "$MAKE_PREBUILT/lib"
    build "$BUILD" "$MAKE_PREBUILT/build.log"
    for t in "${PROGRAMS[@]}"; do
        cp "$BUILD/$t" "$MAKE_PREBUILT/bin/"
        strip --strip-debug "$MAKE_PREBUILT/bin/${t##*/}"
    done
    # Every shared library outside the C runtime, with the versions the programs were built
    # against (the CUDA image is another distribution). cuBLAS is not carried: it is loaded at
    # run time from the machine (NVL_CUBLAS_LIB).
    ldd "$MAKE_PREBUILT"/bin/* | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | sort -u |
        while read -r name path; do
            case $name in
            libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | libgcc_s.so* | \
                libstdc++.so* | ld-linux* | libcublas*) ;;
            *) cp -L "$path" "$MAKE_PREBUILT/lib/$name" ;;
            esac
        done
    echo "gpu-model-bench: programs and libraries in $MAKE_PREBUILT"
    exit 0
fi

OUT=${OUT:-$(mktemp -d /tmp/nvl-gpu-model.XXXXXX)}
mkdir -p "$OUT" "$DISK"
LOG=$OUT/gpu-model-bench.log
: >"$LOG"
if [ -n "$PREBUILT" ]; then
    BIN=$PREBUILT/bin
    export LD_LIBRARY_PATH=$PREBUILT/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
else
    BUILD=${BUILD_DIR:-build-gpu}
    build "$BUILD" "$LOG"
    BIN=$OUT/bin
    mkdir -p "$BIN"
    for t in "${PROGRAMS[@]}"; do cp "$BUILD/$t" "$BIN/"; done
fi

# cuBLAS for the prompt GEMMs: the toolkit's, or the one pip installed with PyTorch.
if [ -z "${NVL_CUBLAS_LIB:-}" ]; then
    for c in /usr/local/cuda/lib64/libcublas.so.13 /usr/local/cuda/targets/x86_64-linux/lib/libcublas.so.13 \
        $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null | xargs -n1 -I{} \
            sh -c 'ls {}/nvidia/*/lib/libcublas.so.13 {}/nvidia/cu13/lib/libcublas.so.13 2>/dev/null'); do
        if [ -e "$c" ]; then
            export NVL_CUBLAS_LIB=$c
            break
        fi
    done
fi
GPU=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
echo "gpu-model-bench: $GPU, $(date -u +%Y-%m-%d), $(nproc) CPUs, cuBLAS ${NVL_CUBLAS_LIB:-none}, logs in $OUT" |
    tee -a "$LOG"

# Models for the correctness tests.
STORIES="" SMOL=""
for d in "$MODELS" "$ROOT/../shared/models" "$ROOT/.cache/models"; do
    [ -n "$d" ] || continue
    [ -z "$STORIES" ] && [ -e "$d/stories260K.gguf" ] && STORIES=$d/stories260K.gguf
    [ -z "$SMOL" ] && SMOL=$(ls "$d"/SmolLM2*.gguf 2>/dev/null | head -1)
done

want() { [ -z "$STEPS" ] || [[ $STEPS == *",$1,"* ]]; }
declare -a ROWS
row() { ROWS+=("$1"); echo "ROW $1" >>"$LOG"; }
run() { # run NAME LIMIT CMD...: output to OUT/NAME.out, tail shown; returns the exit status
    local name=$1 limit=$2 rc
    shift 2
    echo "== $name: $*" | tee -a "$LOG"
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.out" 2>&1
    rc=$?
    cat "$OUT/$name.out" >>"$LOG"
    tail -n 3 "$OUT/$name.out"
    [ $rc = 124 ] || [ $rc = 137 ] && echo "gpu-model-bench: $name timed out after $limit s" | tee -a "$LOG"
    return $rc
}
field() { # field FILE KEY: value of KEY= in the gpu-bench line
    sed -n 's/.*gpu-bench: //p' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * a / b; else print "-" }'; }
synth() { # synth SHAPE TYPE FILE
    [ -s "$3" ] && return 0
    run "synth_$(basename "$3" .gguf)" 300 "$BIN/nvgguf" synth --shape "$1" --type "$2" -o "$3"
}

NTG=128 NOFF=16 NSTR=6 N70=3
[ $QUICK = 1 ] && NTG=32 NOFF=6 NSTR=3 N70=2

if want tests; then
    run test_kernels_host 120 "$BIN/test_kernels_host"
    r=$?; row "| test_kernels_host (block math on the CPU) | $([ $r = 0 ] && echo pass || echo "FAIL ($r)") |"
    run test_kernels 300 "$BIN/test_kernels"
    r=$?; row "| test_kernels (every kernel vs its reference) | $([ $r = 0 ] && echo pass || echo "FAIL ($r)") |"
    run test_gpu_forward 400 "$BIN/test_gpu_forward" "${STORIES:-none}" "${SMOL:-none}"
    r=$?; row "| test_gpu_forward (GPU == CPU greedy; streaming bit-identical) | $([ $r = 0 ] && echo pass || echo "FAIL ($r)") |"
    grep -E "greedy|divergence|bit-identical|DIFFERENT|logits max" "$OUT/test_gpu_forward.out" |
        sed 's/^/    /' | tee -a "$LOG"
    if [ -n "$STORIES" ]; then
        for dev in gpu cpu; do
            timeout 60 "$BIN/nvinfer" -m "$STORIES" -p "Once upon a time" -n 64 --temp 0 -v \
                --device $dev >"$OUT/nvinfer_stories_$dev.txt" 2>"$OUT/nvinfer_stories_$dev.err"
            cat "$OUT/nvinfer_stories_$dev.txt" "$OUT/nvinfer_stories_$dev.err" | tee -a "$LOG"
        done
        if cmp -s "$OUT/nvinfer_stories_gpu.txt" "$OUT/nvinfer_stories_cpu.txt"; then
            row "| nvinfer stories260K greedy text, GPU vs CPU | identical |"
        else
            row "| nvinfer stories260K greedy text, GPU vs CPU | DIFFERENT |"
        fi
    fi
fi

if want matvec; then
    run bench_matvec 300 "$BIN/bench_matvec"
    while read -r t rest; do
        ms=${rest#*ms=} gbs=${rest#*gbs=} ratio=${rest#*ratio=}
        row "| 8B $t decode products alone (bench_matvec) | ${ms%% *} ms a token | ${gbs%% *} GB/s | $(pct "${ratio%% *}" 1) of the copy bandwidth |"
    done < <(sed -n 's/^bench_matvec: type=//p' "$OUT/bench_matvec.out")
fi

Q4K=$DISK/llama3-8b-q4_K.gguf
if want resident; then
    for t in q4_0 q8_0 q4_K; do
        f=$DISK/llama3-8b-$t.gguf
        synth llama3-8b $t "$f" || continue
        run "resident_$t" 300 "$BIN/nvinfer" -m "$f" --benchmark -n "$NTG" -c 2048 -v
        o=$OUT/resident_$t.out
        tg=$(field "$o" tg) roof=$(field "$o" roof) pp=$(field "$o" pp)
        cl=$(field "$o" tg_cpu_loop) ts=$(field "$o" tg_sampled)
        row "| 8B $t resident | pp512 ${pp:-?} tok/s | tg$NTG ${tg:-?} tok/s (tokens picked on the GPU; sampled on the GPU ${ts:-?}; CPU loop ${cl:-?}) | roofline ${roof:-?} tok/s ($(field "$o" d2d_gbs) GB/s d2d) | $(pct "${tg:-0}" "${roof:-0}") |"
        [ "$t" != q4_K ] && rm -f "$f"
    done
fi
RES_TG=$(field "$OUT/resident_q4_K.out" tg 2>/dev/null)

# Where the time goes: one single-token pass (Q4_0 and Q4_K) and one 512-token prompt pass
# (Q4_0) under Nsight Compute, graphs off so that every kernel is its own launch; time, DRAM
# bytes, achieved occupancy, SM busy and shared-load bank conflicts per kernel, summed by kernel
# (scripts/ncu-table.py).
if want profile; then
    NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
    METRICS=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,sm__warps_active.avg.pct_of_peak_sustained_active,sm__throughput.avg.pct_of_peak_sustained_elapsed,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum
    for t in ${PROFILE_TYPES:-q4_0 q4_K}; do
        f=$DISK/llama3-8b-$t.gguf
        synth llama3-8b $t "$f"
        [ -n "$NCU" ] || break
        run "profile_decode_$t" 400 env NVL_GPU_GRAPHS=0 "$NCU" --csv --page raw --metrics "$METRICS" \
            "$BIN/nvinfer" -m "$f" -p "" -n 1 --temp 0 -c 256
        python3 scripts/ncu-table.py "$OUT/profile_decode_$t.out" "one decode pass, $t, graphs off" |
            tee -a "$LOG" "$OUT/profile.md"
    done
    f=$DISK/llama3-8b-q4_0.gguf
    if [ -n "$NCU" ] && [ "${PROFILE_PREFILL:-1}" = 1 ]; then
        run profile_prefill_q4_0 500 env NVL_GPU_GRAPHS=0 NVL_BENCH_NO_WARMUP=1 "$NCU" --csv --page raw \
            --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
            "$BIN/nvinfer" -m "$f" --benchmark -n 1 -c 1024
        python3 scripts/ncu-table.py "$OUT/profile_prefill_q4_0.out" "pp512 + 2 decode passes, q4_0, graphs off" |
            tee -a "$LOG" "$OUT/profile.md"
    fi
    # Sensitivity of decode to the matrix-vector block size, programmatic dependent launch and
    # CUDA graphs.
    for v in NVL_MV_WARPS=2 NVL_MV_WARPS=8 NVL_GPU_PDL=0 NVL_GPU_GRAPHS=0; do
        run "resident_q4_0_$v" 300 env "$v" "$BIN/nvinfer" -m "$f" --benchmark -n "$NTG" -c 2048
        row "| 8B q4_0 resident, $v | tg $(field "$OUT/resident_q4_0_$v.out" tg) tok/s |"
    done
fi

# Opt-in (only when named in --steps): one matrix-vector launch (the third of a decode pass: the
# first layer's gate/up product) under `ncu --set full`, its details page and where its
# instructions and stalls go (scripts/ncu-sass.py), for PROFILE_TYPES.
if [[ $STEPS == *",sass,"* ]]; then
    NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
    for t in ${PROFILE_TYPES:-q4_0 q4_K}; do
        f=$DISK/llama3-8b-$t.gguf
        synth llama3-8b $t "$f"
        [ -n "$NCU" ] || break
        run "sass_$t" 300 env NVL_GPU_GRAPHS=0 "$NCU" -k regex:k_matvec --launch-skip 2 \
            --launch-count 1 --set full --import-source no -o "$OUT/sass_$t" \
            "$BIN/nvinfer" -m "$f" -p "" -n 1 --temp 0 -c 256
        "$NCU" -i "$OUT/sass_$t.ncu-rep" --page details >"$OUT/sass_${t}_details.txt" 2>&1
        "$NCU" -i "$OUT/sass_$t.ncu-rep" --page source --csv --print-source sass \
            >"$OUT/sass_$t.csv" 2>&1
        python3 scripts/ncu-sass.py "$OUT/sass_$t.csv" "gate/up launch, $t" | tee -a "$LOG"
        grep -E "Duration|DRAM Throughput|Registers Per|Issued Ipc|No Eligible" \
            "$OUT/sass_${t}_details.txt" | tee -a "$LOG"
        rm -f "$OUT/sass_$t.ncu-rep"
    done
fi

if want offload; then
    synth llama3-8b q4_K "$Q4K"
    for n in 0 8 16 24; do
        run "offload_${n}" 300 "$BIN/nvinfer" -m "$Q4K" --benchmark -n "$NOFF" -c 2048 -v \
            --vram-budget "${n}L" --ram-budget 64G
        o=$OUT/offload_${n}.out
        tg=$(field "$o" tg) bound=$(field "$o" bound)
        row "| 8B q4_K, $n/32 layers in VRAM, rest pinned RAM | tg ${tg:-?} tok/s | PCIe bound ${bound:-?} tok/s ($(field "$o" h2d_gbs) GB/s H2D) | $(pct "${tg:-0}" "${bound:-0}") |"
    done
fi

if want stream; then
    synth llama3-8b q4_K "$Q4K"
    # The sim serves the file from the page cache (mode=mem: a private map) with 8 threads, so
    # that the bandwidth model, not the machine's virtual disk, is the drive's speed.
    run stream_sim7 400 "$BIN/nvinfer" --sim "file=$Q4K,mode=mem,threads=8" --sim-bw 7GB/s --backend gpu-nvme --benchmark \
        -n "$NSTR" -c 2048 -v --vram-budget 4L --prefetch 4
    o=$OUT/stream_sim7.out
    tg=$(field "$o" tg) drive=$(field "$o" bound)
    b=$(awk -v d="${drive:-0}" -v r="${RES_TG:-0}" 'BEGIN { x = d; if (r > 0 && r < d) x = r; printf "%.3f", x }')
    row "| 8B q4_K, 28/32 layers streamed, gpu-nvme on sim at 7 GB/s | tg ${tg:-?} tok/s | bound ${b} tok/s | $(pct "${tg:-0}" "$b") | CPU $(field "$o" cpu_ms) ms/token |"
fi

if want files; then
    synth llama3-8b q4_K "$Q4K"
    for be in file gds; do
        run "stream_$be" 400 "$BIN/nvinfer" -m "$Q4K" --backend $be --benchmark -n "$NSTR" -c 2048 -v \
            --vram-budget 4L --prefetch 4
        o=$OUT/stream_$be.out
        row "| 8B q4_K, 28/32 layers streamed through $be (disk) | tg $(field "$o" tg) tok/s | $(field "$o" stream_bytes | awk '{ printf "%.2f GB/token", $1 / 1e9 }') | CPU $(field "$o" cpu_ms) ms/token | $(grep -o 'loader: [^(]*' "$o" | head -1) |"
    done
fi

if want 70b; then
    rm -f "$DISK"/llama3-8b-*.gguf
    F70=$DISK/llama2-70b-q4_K.gguf
    synth llama2-70b q4_K "$F70"
    run stream_70b 560 "$BIN/nvinfer" --sim "file=$F70,mode=mem,threads=8" --sim-bw 7GB/s --backend gpu-nvme --benchmark \
        -n "$N70" -c 512 -v --prefetch 4 --vram-budget 10L
    o=$OUT/stream_70b.out
    tg=$(field "$o" tg) drive=$(field "$o" bound)
    row "| 70B q4_K, $(field "$o" vram_layers)/80 layers in VRAM, rest gpu-nvme on sim at 7 GB/s | tg ${tg:-?} tok/s | bound ${drive:-?} tok/s | $(pct "${tg:-0}" "${drive:-0}") | CPU $(field "$o" cpu_ms) ms/token |"
fi

{
    echo
    echo "GPU inference on $GPU ($(date -u +%Y-%m-%d)):"
    echo
    for r in "${ROWS[@]}"; do echo "$r"; done
} | tee "$OUT/table.md" | tee -a "$LOG"
