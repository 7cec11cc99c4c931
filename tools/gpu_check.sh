#!/usr/bin/env bash
# tools/gpu_check.sh: one bounded GPU check of megashtein-gpu with prebuilt binaries.
#
#   tools/gpu_check.sh OUTDIR     run every check, write the results into OUTDIR
#   tools/gpu_check.sh --stage    (here, before a device run) stage the binaries and the
#                                 Vulkan loader packages for the device machine
#
# What it runs, in this order, each step with its stdout in OUTDIR/<step>.json (or .txt
# for text output) and its stderr in OUTDIR/<step>.log; a failing or timed-out step is
# recorded and the script goes on:
#   info        git.txt (HEAD, status), env.txt, nvidia-smi.txt, vulkaninfo.txt (each if
#               the tool exists), devices.txt (`megashtein-gpu devices`)
#   test_*      the kernel tests, tests/ops_*.rs and tests/model_*.rs, each test binary
#               run directly (no cargo, no Python), text output
#   knn_b*      `bench knn --json`, 10^6 rows, k 10,100,1024, f32 and f16, one run per
#               batch 1, 1,000 and 10,000, with the PyTorch CUDA peer
#   bench_embed, bench_train   with their PyTorch CUDA peers (--json if the binary has
#               it, else the text table, noted in summary.txt)
#   query_prep  a seeded base (200,000 random lowercase words, 5-15 characters) and
#               1,000 typo'd queries (`misspelling<TAB>correct`, 1-2 edits of a base word)
#               made by Python's stdlib, the base embedded into an index (in a scratch
#               folder, not in OUTDIR; OUTDIR gets query_pairs.tsv and both files' SHA-256)
#   bench_join  `bench join --json` within that index at D = 1, 2 (our join against the
#               exact length-pruned join on all cores: time, recall, groups)
#   bench_query `bench query --json` on that index and those pairs (plus the rapidfuzz
#               peer where $PYTHON has rapidfuzz and numpy)
#   bench_query_cgk  the same base embedded by models/cgk.safetensors: `bench query
#               --json` on that index, then on the learned index `--also` it (two lines)
#   cnn_ed      long strings (issue 16): DNA-like reads by tools/make_dna_families.py
#               (16,000 reads of ~500 letters, 1,000 queries), `train --arch cnn-ed`,
#               `bench embed --json` of the model (strings of its M), `embed` of the
#               base and one `query -k 1 -C 10` process, each timed, a 2-epoch model
#               with ReLUs after blocks 3 and 6 and its `bench embed --json` (the
#               layered network), and the
#               rapidfuzz cdist peer with recall@1 where $PYTHON has rapidfuzz and numpy;
#               JSON lines {"what": ..., "seconds": ...} beside bench embed's
# and writes OUTDIR/summary.txt: every step's exit code, wall time and time limit.
#
# Environment:
#   BIN                   the binary (default target/release/megashtein-gpu)
#   TEST_DIR              where the test binaries are (default target/release/deps; the
#                         newest <name>-<hash> of each test is run)
#   PYTHON                Python for the PyTorch peers (default python3); the peers are
#                         skipped, with a note, where `import torch` fails or (for cuda)
#                         torch.cuda.is_available() is False
#   GPU_CHECK_SCALE       full (default: the GPU sizes above) or small (10^4 kNN rows,
#                         batches 1,100,1000, 20,000-word base, 200 queries, short
#                         --seconds: a few minutes on lavapipe, to test this script)
#   GPU_CHECK_BUDGET      seconds for the whole run (default 470, i.e. under 8 minutes);
#                         every step's `timeout` is cut to what is left, keeping each later
#                         step's minimum in reserve; a step with too little left is skipped
#   GPU_CHECK_TORCH_DEVICE  device of the PyTorch peers (default cuda; cpu to test here)
#   GPU_CHECK_TESTS       test name prefixes (default "ops_ model_")
#   GPU_CHECK_WORK        scratch folder for the query base and index (default: mktemp)
#   WGPU_BACKEND, WGPU_ADAPTER_NAME are passed through to the binary.
#
# Expected run time on one H100/H200 (an estimate: nothing of this has run there yet):
#   info + devices ~10 s; kernel tests ~15 s (4.4 s on lavapipe, 2 cores);
#   bench knn 3 x ~45 s (ours: 6 cases x 2 s + warm-ups + two 10^6-row databases made
#     on the CPU; the peer: torch start + 6 x (2 s + <=0.4 s warm-up); at batch 10,000
#     the peer's [10^4, 10^6] f32 distance matrix needs ~80 GB at its peak: it fits on
#     an H200, on an 80 GB H100 that case prints an "error" row instead);
#   bench embed ~35 s (5 batch sizes x 2 s, twice); bench train ~35 s (3 x 3 s, twice);
#   per-kernel profiles of a forward pass and a training step ~20 s;
#   query_prep ~20 s (generation ~3 s, embedding 200,000 strings); bench query ~30 s
#     (exact scan 1,000 x 200,000 on 16 cores ~3 s, 7 candidate counts).
#   bench_query_cgk ~40 s (CGK embedding ~1 s, two sweeps like bench query).
#   cnn_ed ~75 s (10 epochs: 257 s for 50 on lavapipe; the exact 1,000 x 1,000 training
#     distances and the cdist peer, 116 s on 2 cores, on 16 cores).
#   Total ~6 min; the budget (470 s) stops it before 8 min whatever happens.
#
# On the device machine (`run` tool), from a session on this repository:
#   1. Here, once per session, after `cargo build --release` and
#      `cargo test --release --no-run`:   tools/gpu_check.sh --stage
#      It copies the binary and the kernel-test binaries, stripped, into .gpucheck/
#      (~45 MiB), downloads the Vulkan loader packages into .gl/ as the device README
#      says, adds /.gl/ and /.gpucheck/ to .git/info/exclude, records HEAD and the
#      working tree's state (the device copy may have no .git), and prints what travels
#      (the limit is 64 MiB: tracked + untracked-not-ignored files + carried paths).
#   2. run with
#      carry:     [".gl", ".gpucheck"]
#      timeout_s: 540
#      command:
#        for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; BIN=.gpucheck/megashtein-gpu TEST_DIR=.gpucheck/tests PYTHON=python3 bash tools/gpu_check.sh /tmp/gc; tar -C /tmp -czf $OUT/gpu_check.tar.gz gc; cp /tmp/gc/summary.txt $OUT/
#      Only 8 files come back from $OUT, hence the tarball; summary.txt is also printed
#      last, so output_tail shows it. Then give_back. Device time: ~1-2 min start +
#      ~5 min (at most 8) + transfers, inside the 15-minute budget.
#   If `devices` there selects no NVIDIA Vulkan adapter and
#   /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json exists, the script exports
#   VK_DRIVER_FILES and __EGL_VENDOR_LIBRARY_FILENAMES as the device README says and
#   asks again (devices_retry.txt).

set -u

# ---------------------------------------------------------------------------- common

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

now() { date +%s.%N; }
# seconds between two `now` values, one decimal
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
have() { command -v "$1" >/dev/null 2>&1; }

# The newest executable <TEST_DIR>/<prefix><name>-<hash> of each test name.
find_tests() {
    local dir=$1 prefix f base name
    declare -A newest=()
    for prefix in ${GPU_CHECK_TESTS:-ops_ model_}; do
        for f in "$dir"/"$prefix"*; do
            if [ ! -f "$f" ] || [ ! -x "$f" ]; then continue; fi
            case "$f" in *.d | *.rlib | *.rmeta | *.so) continue ;; esac
            base=$(basename "$f")
            name=${base%-*}
            if [ -z "${newest[$name]:-}" ] || [ "$f" -nt "${newest[$name]}" ]; then
                newest[$name]=$f
            fi
        done
    done
    for name in "${!newest[@]}"; do echo "${newest[$name]}"; done | sort
}

# ----------------------------------------------------------------------------- stage

stage() {
    cd "$REPO" || exit 1
    local bin=${BIN:-target/release/megashtein-gpu} test_dir=${TEST_DIR:-target/release/deps}
    local stage_dir=.gpucheck tests f exclude
    if have cargo; then
        # cargo's own list of the test binaries of this tree (builds them if stale)
        tests=$(set -o pipefail; cargo test --release --no-run --message-format=json 2>/dev/null |
            grep -o '"executable":"[^"]*"' | sed 's/^"executable":"//; s/"$//' |
            grep -E "/deps/($(echo "${GPU_CHECK_TESTS:-ops_ model_}" | tr -s ' ' '|'))[^/]*$") ||
            { echo "warning: cargo test --no-run failed; staging the newest test binaries in $test_dir" >&2; tests=; }
        cargo build --release 2>/dev/null || echo "warning: cargo build --release failed; staging $bin as it is" >&2
    fi
    [ -x "$bin" ] || { echo "no binary at $bin: cargo build --release first" >&2; exit 1; }
    [ -n "${tests:-}" ] || tests=$(find_tests "$test_dir")
    [ -n "$tests" ] || { echo "no test binaries in $test_dir: cargo test --release --no-run" >&2; exit 1; }
    exclude=$(git rev-parse --git-path info/exclude)
    mkdir -p "$(dirname "$exclude")"
    for f in /.gl/ /.gpucheck/; do
        grep -qxF "$f" "$exclude" 2>/dev/null || echo "$f" >>"$exclude"
    done
    rm -rf "$stage_dir"
    mkdir -p "$stage_dir/tests"
    cp "$bin" "$stage_dir/megashtein-gpu"
    for f in $tests; do
        cp "$f" "$stage_dir/tests/"
        # cargo's dep-info: the run reads the compiled-in CARGO_MANIFEST_DIR from it
        [ -f "$f.d" ] && cp "$f.d" "$stage_dir/tests/"
    done
    if have strip; then
        strip "$stage_dir/megashtein-gpu"
        for f in "$stage_dir"/tests/*; do
            case "$f" in *.d) ;; *) strip "$f" ;; esac
        done
    fi
    {
        echo "staged: $(date -u +%FT%TZ) from $(pwd)"
        echo "HEAD: $(git rev-parse HEAD 2>/dev/null)"
        echo "binary: $bin ($(date -u -r "$bin" +%FT%TZ))"
        for f in $tests; do echo "test: $f ($(date -u -r "$f" +%FT%TZ))"; done
        echo "git status --short:"
        git status --short 2>/dev/null
        echo "git diff --stat HEAD:"
        git diff --stat HEAD 2>/dev/null
    } >"$stage_dir/git.txt"
    # Vulkan loader packages, exactly as the device README says.
    if ! ls .gl/*.deb >/dev/null 2>&1; then
        mkdir -p .gl /tmp/amd64/partial
        local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
        # shellcheck disable=SC2086
        apt-get $o update >/dev/null &&
            (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    fi
    local tree carried
    tree=$( (git ls-files -z; git ls-files -z --others --exclude-standard) |
        du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
    carried=$(du -cb .gl "$stage_dir" | tail -1 | cut -f1)
    echo "staged into $stage_dir:"
    ls -l "$stage_dir" "$stage_dir/tests" .gl
    awk -v t="$tree" -v c="$carried" 'BEGIN {
        printf "would travel: working tree %.1f MiB + carried .gl, .gpucheck %.1f MiB = %.1f MiB (limit 64)\n",
            t / 1048576, c / 1048576, (t + c) / 1048576 }'
    echo 'run: carry [".gl", ".gpucheck"], timeout_s 540, command:'
    # shellcheck disable=SC2016
    echo 'for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; BIN=.gpucheck/megashtein-gpu TEST_DIR=.gpucheck/tests PYTHON=python3 bash tools/gpu_check.sh /tmp/gc; tar -C /tmp -czf $OUT/gpu_check.tar.gz gc; cp /tmp/gc/summary.txt $OUT/'
}

if [ "${1:-}" = "--stage" ]; then
    stage
    exit
fi
if [ $# -ne 1 ] || [ "${1:0:1}" = "-" ]; then
    sed -n '2,/^set -u/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 2
fi

# ------------------------------------------------------------------------------ run

mkdir -p "$1" || exit 1
OUTDIR=$(cd "$1" && pwd)
cd "$REPO" || exit 1

BIN=${BIN:-target/release/megashtein-gpu}
TEST_DIR=${TEST_DIR:-target/release/deps}
PYTHON=${PYTHON:-python3}
SCALE=${GPU_CHECK_SCALE:-full}
BUDGET=${GPU_CHECK_BUDGET:-470}
TORCH_DEVICE=${GPU_CHECK_TORCH_DEVICE:-cuda}
case "$BIN" in /*) ;; *) BIN=$REPO/$BIN ;; esac
case "$TEST_DIR" in /*) ;; *) TEST_DIR=$REPO/$TEST_DIR ;; esac
WORK=${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
mkdir -p "$WORK"
# lavapipe and some drivers want a runtime dir
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    XDG_RUNTIME_DIR=$(mktemp -d "${TMPDIR:-/tmp}/xdg.XXXXXX")
    export XDG_RUNTIME_DIR
fi

case "$SCALE" in
full)
    KNN_ROWS=1000000 KNN_BATCHES="1 1000 10000" KNN_K=10,100,1024 KNN_SECONDS=2
    EMBED_SIZES=1,16,256,4096,65536 EMBED_SECONDS=2
    TRAIN_PAIRS=64,256,1024 TRAIN_SECONDS=3 PROFILE_BATCH=65536 PROFILE_PAIRS=1024
    BASE_WORDS=200000 QUERY_PAIRS=1000 QUERY_C=10,20,50,100,200,500,1024
    CNN_ED_BASE=16000 CNN_ED_QUERIES=1000 CNN_ED_EPOCHS=10
    ;;
small)
    KNN_ROWS=10000 KNN_BATCHES="1 100 1000" KNN_K=10,100,1024 KNN_SECONDS=0.3
    EMBED_SIZES=1,16,256 EMBED_SECONDS=0.3
    TRAIN_PAIRS=64,256 TRAIN_SECONDS=0.5 PROFILE_BATCH=1024 PROFILE_PAIRS=256
    BASE_WORDS=20000 QUERY_PAIRS=200 QUERY_C=10,100,1024
    CNN_ED_BASE=2000 CNN_ED_QUERIES=100 CNN_ED_EPOCHS=1
    ;;
*)
    echo "GPU_CHECK_SCALE must be full or small, not $SCALE" >&2
    exit 2
    ;;
esac

START=$(now)
DEADLINE=$(awk -v s="$START" -v b="$BUDGET" 'BEGIN { printf "%.3f", s + b }')
SUMMARY_ROWS=$OUTDIR/.summary_rows
NOTES=$OUTDIR/.notes
: >"$SUMMARY_ROWS"
: >"$NOTES"
note() { echo "- $*" | tee -a "$NOTES" >&2; }

# Each step's cap (most seconds it may take) and minimum (seconds kept in reserve for it
# while earlier steps run). The sum of the minimums must stay well under the budget.
declare -A CAP=() MIN=()
PLAN=()
plan() { PLAN+=("$1"); CAP[$1]=$2; MIN[$1]=$3; }
plan devices 60 10
plan devices_retry 60 0
TESTS=$(find_tests "$TEST_DIR")
for t in $TESTS; do
    name=$(basename "$t"); name=test_${name%-*}
    plan "$name" 90 15
done
for b in $KNN_BATCHES; do plan "knn_b$b" 150 40; done
plan bench_embed 120 35
plan bench_train 120 35
plan profile_embed 40 10
plan profile_train 40 10
plan query_prep 120 20
plan bench_query 150 40
plan bench_query_cgk 150 30
plan bench_join 120 30
plan cnn_ed 150 40

# Seconds `timeout` gives step $1: its cap, cut to what is left of the budget after the
# minimums of the steps after it. Prints 0 where less than 5 s would be left.
step_limit() {
    local name=$1 later=0 seen=0 s
    for s in "${PLAN[@]}"; do
        if [ "$seen" = 1 ]; then later=$((later + ${MIN[$s]})); fi
        [ "$s" = "$name" ] && seen=1
    done
    awk -v d="$DEADLINE" -v n="$(now)" -v r="$later" -v c="${CAP[$name]}" -v m="${MIN[$name]}" 'BEGIN {
        left = d - n - r
        if (left < m) left = m                  # behind plan: take own minimum anyway
        if (left > c) left = c
        if (left > d - n) left = d - n          # never past the deadline
        printf "%d", (left < 5 ? 0 : left) }'
}

# step NAME OUTFILE CMD...: run CMD under the step's time limit, stdout to
# OUTDIR/OUTFILE, stderr to OUTDIR/NAME.log; record exit code and wall time.
step() {
    local name=$1 out=$2 limit t0 rc wall status
    shift 2
    limit=$(step_limit "$name")
    if [ "$limit" -le 0 ]; then
        echo "$name|-|SKIPPED|0.0|0|$out|no time left in the ${BUDGET} s budget" >>"$SUMMARY_ROWS"
        echo "== $name: skipped, no time left" >&2
        STEP_STATUS=SKIPPED STEP_NOTE=
        return 0
    fi
    echo "== $name (limit ${limit} s): $*" >&2
    t0=$(now)
    timeout --kill-after=10 "$limit" "$@" >"$OUTDIR/$out" 2>"$OUTDIR/$name.log"
    rc=$?
    wall=$(elapsed "$t0" "$(now)")
    case $rc in
    0) status=ok ;;
    124 | 137) status=TIMEOUT ;;
    *) status=FAILED ;;
    esac
    echo "$name|$rc|$status|$wall|$limit|$out|${STEP_NOTE:-}" >>"$SUMMARY_ROWS"
    STEP_STATUS=$status
    echo "   $status (rc $rc) in $wall s" >&2
    STEP_NOTE=
    return "$rc"
}

# Count the JSON values (one a line) in OUTDIR/$1, or say it is not valid JSON.
json_note() {
    have python3 || return 0
    python3 - "$OUTDIR/$1" <<'EOF'
import json, sys
n = bad = 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    if line.strip():
        try:
            json.loads(line)
            n += 1
        except ValueError:
            bad += 1
print(f"{n} JSON lines" + (f", {bad} NOT JSON" if bad else ""))
EOF
}

# Append to the last summary row's note.
add_note() {
    [ -n "$*" ] && [ -s "$SUMMARY_ROWS" ] && [ "${STEP_STATUS:-}" != SKIPPED ] || return 0
    local last
    last=$(tail -n 1 "$SUMMARY_ROWS")
    sed -i '$d' "$SUMMARY_ROWS"
    case "$last" in
    *"|") echo "$last$*" ;;
    *) echo "$last; $*" ;;
    esac >>"$SUMMARY_ROWS"
}

# ----------------------------------------------------------------------------- info

{
    echo "HEAD: $(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo '(no git here)')"
    if git -C "$REPO" rev-parse HEAD >/dev/null 2>&1; then
        echo "git status --short:"
        git -C "$REPO" status --short
    fi
    stage_git=$(dirname "$BIN")/git.txt
    if [ -f "$stage_git" ]; then
        echo "--- $stage_git (recorded when the binaries were staged):"
        cat "$stage_git"
    fi
} >"$OUTDIR/git.txt" 2>&1

{
    echo "date: $(date -u +%FT%TZ)"
    echo "host: $(uname -a)"
    echo "cpus: $(nproc 2>/dev/null)"
    echo "scale: $SCALE, budget: $BUDGET s, torch device: $TORCH_DEVICE"
    echo "BIN: $BIN"
    [ -f "$BIN" ] && echo "BIN sha256: $(sha256sum "$BIN" | cut -d' ' -f1), $(date -u -r "$BIN" +%FT%TZ)"
    echo "TEST_DIR: $TEST_DIR"
    for t in $TESTS; do echo "test: $t ($(date -u -r "$t" +%FT%TZ))"; done
    echo "PYTHON: $PYTHON ($(command -v "$PYTHON" 2>/dev/null))"
    echo "work: $WORK"
    env | grep -E '^(WGPU_|VK_|__EGL|__GLX|XDG_RUNTIME_DIR|CUDA_VISIBLE|NVIDIA_)' | sort
    echo "libvulkan: $(ldconfig -p 2>/dev/null | grep -c libvulkan) entries in ldconfig"
    ldconfig -p 2>/dev/null | grep libvulkan
} >"$OUTDIR/env.txt" 2>&1

if have nvidia-smi; then
    timeout 30 nvidia-smi >"$OUTDIR/nvidia-smi.txt" 2>&1
else
    echo "nvidia-smi: not installed" >"$OUTDIR/nvidia-smi.txt"
fi
if have vulkaninfo; then
    timeout 30 vulkaninfo --summary >"$OUTDIR/vulkaninfo.txt" 2>&1
else
    echo "vulkaninfo: not installed" >"$OUTDIR/vulkaninfo.txt"
fi

if [ ! -x "$BIN" ]; then
    note "no executable binary at $BIN: every bench step will fail"
fi
if [ -z "$TESTS" ]; then
    note "no test binaries (${GPU_CHECK_TESTS:-ops_ model_}*) in $TEST_DIR"
fi

# The model tests open fixtures under the CARGO_MANIFEST_DIR they were compiled in
# (env!), read here from cargo's dep-info file beside each test binary (<test>.d, line
# "# env-dep:CARGO_MANIFEST_DIR=..."); where that folder is missing (another machine),
# point it at this checkout.
MANIFEST_DIR=${GPU_CHECK_MANIFEST_DIR:-}
for t in $TESTS; do
    if [ -z "$MANIFEST_DIR" ] && [ -f "$t.d" ]; then
        MANIFEST_DIR=$(sed -n 's/^# env-dep:CARGO_MANIFEST_DIR=//p' "$t.d" | head -n 1)
    fi
done
if [ -n "$MANIFEST_DIR" ] && [ "$MANIFEST_DIR" != "$REPO" ]; then
    if [ -e "$MANIFEST_DIR" ]; then
        [ -f "$MANIFEST_DIR/tests/fixtures/forward.safetensors" ] ||
            note "compiled-in manifest dir $MANIFEST_DIR exists but is not this checkout: the model tests may not find their fixtures"
    elif mkdir -p "$(dirname "$MANIFEST_DIR")" && ln -s "$REPO" "$MANIFEST_DIR"; then
        note "linked the tests' compiled-in manifest dir $MANIFEST_DIR -> $REPO"
    else
        note "could not link $MANIFEST_DIR -> $REPO: the model tests may not find their fixtures"
    fi
fi

# -------------------------------------------------------------------------- devices

step devices devices.txt "$BIN" devices
SELECTED=$(grep '^selected:' "$OUTDIR/devices.txt" 2>/dev/null)
NV_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if ! echo "$SELECTED" | grep -qi 'nvidia.*vulkan' && [ -f "$NV_ICD" ] && [ -z "${VK_DRIVER_FILES:-}" ]; then
    export VK_DRIVER_FILES=$NV_ICD
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    note "no NVIDIA Vulkan adapter selected (${SELECTED:-none}); retrying with VK_DRIVER_FILES=$NV_ICD"
    step devices_retry devices_retry.txt "$BIN" devices
    SELECTED=$(grep '^selected:' "$OUTDIR/devices_retry.txt" 2>/dev/null)
fi
add_note "${SELECTED:-no adapter selected}"
echo "$SELECTED" | grep -qi 'Cpu,\|llvmpipe\|lavapipe' && note "the selected adapter is a CPU one: $SELECTED"

# ---------------------------------------------------------------------------- tests

for t in $TESTS; do
    name=$(basename "$t")
    name=test_${name%-*}
    step "$name" "$name.txt" "$t" ${GPU_CHECK_TEST_THREADS:+--test-threads="$GPU_CHECK_TEST_THREADS"}
    add_note "$(grep -E '^test result:' "$OUTDIR/$name.txt" | tail -n 1)"
done

# ------------------------------------------------------------------------ torch peer

TORCH_ARGS=()
TORCH_INFO=$(timeout 120 "$PYTHON" -c '
import sys, torch
if sys.argv[1] == "cuda":
    if not torch.cuda.is_available():
        print("torch", torch.__version__, "has no CUDA device"); sys.exit(3)
    print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
else:
    print("torch", torch.__version__, "on", sys.argv[1])
' "$TORCH_DEVICE" 2>&1)
torch_rc=$?
if [ "$torch_rc" -eq 0 ]; then
    TORCH_ARGS=(--torch "$PYTHON" --torch-device "$TORCH_DEVICE")
    note "PyTorch peers: $PYTHON, $TORCH_INFO"
else
    note "PyTorch peers SKIPPED ($PYTHON, rc $torch_rc): $(echo "$TORCH_INFO" | tail -n 1)"
fi

# Whether `bench SUB` has --json in this binary.
has_json() { "$BIN" bench "$1" --help 2>/dev/null | grep -q -- '--json'; }

# ------------------------------------------------------------------------------ knn

for b in $KNN_BATCHES; do
    step "knn_b$b" "knn_b$b.json" "$BIN" bench knn --json --rows "$KNN_ROWS" -k "$KNN_K" \
        --precision f32,f16 --batch "$b" --seconds "$KNN_SECONDS" "${TORCH_ARGS[@]}"
    add_note "$(json_note "knn_b$b.json")"
done

# -------------------------------------------------------------------- embed, train

for sub in embed train; do
    if has_json "$sub"; then
        ext=json json=(--json)
    else
        ext=txt json=()
    fi
    case $sub in
    embed) sizes=(--batch-sizes "$EMBED_SIZES" --seconds "$EMBED_SECONDS") ;;
    train) sizes=(--pairs "$TRAIN_PAIRS" --seconds "$TRAIN_SECONDS") ;;
    esac
    step "bench_$sub" "bench_$sub.$ext" "$BIN" bench "$sub" "${json[@]}" "${sizes[@]}" "${TORCH_ARGS[@]}"
    if [ "$ext" = json ]; then
        add_note "$(json_note "bench_$sub.json")"
    else
        add_note "text table: this binary's bench $sub has no --json"
    fi
done

# Per-kernel profiles (text tables), where this binary has --profile: which kernel the
# GPU spends a forward pass and a training step on.
if "$BIN" bench embed --help 2>/dev/null | grep -q -- '--profile'; then
    step profile_embed profile_embed.txt "$BIN" bench embed --profile --batch-sizes "$PROFILE_BATCH" --seconds 1
    step profile_train profile_train.txt "$BIN" bench train --profile --pairs "$PROFILE_PAIRS" --seconds 1
fi

# ---------------------------------------------------------------------------- query

# Deterministic across machines: only random.Random.random() (the Mersenne Twister's
# output, the same in every Python 3) is used, never choice/shuffle/randrange.
gen_query_data() {
    python3 - "$WORK/base.txt" "$WORK/pairs.tsv" "$BASE_WORDS" "$QUERY_PAIRS" <<'EOF'
import random, sys
base_path, pairs_path, n_words, n_pairs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(20240610)
ab = "abcdefghijklmnopqrstuvwxyz"
def below(n):
    return int(rng.random() * n)
words, seen = [], set()
while len(words) < n_words:
    w = "".join(ab[below(26)] for _ in range(5 + below(11)))
    if w not in seen:
        seen.add(w)
        words.append(w)
def edit(w):
    i = below(len(w))
    op = below(4)
    if op == 0:                                    # substitution
        c = ab[below(25)]
        c = c if c < w[i] else chr(ord(c) + 1)     # never the same letter
        return w[:i] + c + w[i + 1:]
    if op == 1:                                    # insertion
        return w[:i] + ab[below(26)] + w[i:]
    if op == 2 and len(w) > 1:                     # deletion
        return w[:i] + w[i + 1:]
    j = min(i + 1, len(w) - 1)                     # adjacent transposition
    return w[:i] + w[j] + w[i] + w[j + 1:] if j > i else w
pairs, used = [], set()
while len(pairs) < n_pairs:
    correct = words[below(len(words))]
    typo = correct
    for _ in range(1 + below(2)):                  # 1 or 2 edits
        typo = edit(typo)
    if typo != correct and typo not in seen and typo not in used:
        used.add(typo)
        pairs.append((typo, correct))
with open(base_path, "w") as f:
    f.write("\n".join(words) + "\n")
with open(pairs_path, "w") as f:
    f.write("".join(f"{t}\t{c}\n" for t, c in pairs))
print(f"base: {len(words)} words, pairs: {len(pairs)}")
EOF
}

query_prep() {
    gen_query_data || return
    cp "$WORK/pairs.tsv" "$OUTDIR/query_pairs.tsv"
    (cd "$WORK" && sha256sum base.txt pairs.tsv)
    "$BIN" embed --input "$WORK/base.txt" --output "$WORK/base.idx" || return
    ls -l "$WORK/base.idx"
}
if have python3; then
    export -f gen_query_data query_prep
    export WORK BIN OUTDIR BASE_WORDS QUERY_PAIRS
    step query_prep query_prep.txt bash -c query_prep
    prep_rc=$?
    add_note "$(head -n 1 "$OUTDIR/query_prep.txt" 2>/dev/null)"
else
    echo "query_prep|-|SKIPPED|0.0|0|query_prep.txt|no python3 to generate the base" >>"$SUMMARY_ROWS"
    prep_rc=1
fi

if [ "$prep_rc" -eq 0 ] && [ -f "$WORK/base.idx" ]; then
    peer=()
    if timeout 60 "$PYTHON" -c 'import rapidfuzz, numpy' >/dev/null 2>&1; then
        peer=(--python "$PYTHON")
        STEP_NOTE="with the rapidfuzz peer"
    else
        STEP_NOTE="rapidfuzz peer skipped: $PYTHON has no rapidfuzz/numpy"
    fi
    if has_json query; then
        ext=json json=(--json)
    else
        ext=txt json=()
    fi
    step bench_query "bench_query.$ext" "$BIN" bench query "${json[@]}" --index "$WORK/base.idx" \
        --pairs "$WORK/pairs.tsv" --queries "$QUERY_PAIRS" -C "$QUERY_C" "${peer[@]}"
    [ "$ext" = json ] && add_note "$(json_note bench_query.json)"
    [ "$ext" = txt ] && add_note "text: this binary's bench query has no --json"
else
    echo "bench_query|-|SKIPPED|0.0|0|bench_query.json|no index: query_prep failed or was skipped" >>"$SUMMARY_ROWS"
fi
# The training-free CGK model on the same base: its own index, then beside the learned
# one (`--also`); one JSON line each.
query_cgk() {
    "$BIN" embed --model models/cgk.safetensors --input "$WORK/base.txt" \
        --output "$WORK/base-cgk.idx" >&2 || return
    "$BIN" bench query --json --index "$WORK/base-cgk.idx" --pairs "$WORK/pairs.tsv" \
        --queries "$QUERY_PAIRS" -C "$QUERY_C" || return
    "$BIN" bench query --json --index "$WORK/base.idx" --also "$WORK/base-cgk.idx" \
        --pairs "$WORK/pairs.tsv" --queries "$QUERY_PAIRS" -C "$QUERY_C"
}
if [ "$prep_rc" -eq 0 ] && [ -f "$WORK/base.idx" ] && [ -f models/cgk.safetensors ] &&
    "$BIN" make-cgk --help >/dev/null 2>&1; then
    export -f query_cgk
    export QUERY_C
    step bench_query_cgk bench_query_cgk.json bash -c query_cgk
    add_note "$(json_note bench_query_cgk.json)"
else
    echo "bench_query_cgk|-|SKIPPED|0.0|0|bench_query_cgk.json|no index, no models/cgk.safetensors or a binary without CGK" >>"$SUMMARY_ROWS"
fi
if [ "$prep_rc" -eq 0 ] && [ -f "$WORK/base.idx" ]; then
    step bench_join bench_join.json "$BIN" bench join --json --index "$WORK/base.idx" \
        --max-distance 1,2 -C 100 --blowup 3
    add_note "$(json_note bench_join.json)"
else
    echo "bench_join|-|SKIPPED|0.0|0|bench_join.json|no index: query_prep failed or was skipped" >>"$SUMMARY_ROWS"
fi

# CNN-ED on long strings: each stage's wall time as a JSON line, bench embed's own lines,
# and the exact peer with recall@1 where $PYTHON has rapidfuzz and numpy.
cnn_ed_check() {
    local d=$WORK/cnn_ed t0 peer=0
    timed() { # WHAT CMD...: run CMD (stdout to stderr), print {"what", "seconds"}
        local what=$1 t
        shift
        t=$(now)
        "$@" >&2 || return
        echo "{\"what\": \"$what\", \"seconds\": $(elapsed "$t" "$(now)")}"
    }
    mkdir -p "$d/full"
    python3 tools/make_dna_families.py "$d/full" >&2 || return
    head -n "$CNN_ED_BASE" "$d/full/base.txt" >"$d/base.txt"
    head -n "$CNN_ED_QUERIES" "$d/full/queries.txt" >"$d/queries.txt"
    timed train "$BIN" train --arch cnn-ed --corpus "$d/base.txt" \
        --output "$d/model.safetensors" --epochs "$CNN_ED_EPOCHS" || return
    "$BIN" bench embed --json --model "$d/model.safetensors" --batch-sizes 1,256,4096 \
        --seconds "$EMBED_SECONDS" || return
    timed embed "$BIN" embed --model "$d/model.safetensors" --input "$d/base.txt" \
        --output "$d/base.idx" || return
    # A network with ReLUs embeds layer by layer: its bench embed lines follow this one.
    timed "train --relu-after 3,6 (2 epochs)" "$BIN" train --arch cnn-ed \
        --corpus "$d/base.txt" --output "$d/relu.safetensors" --epochs 2 \
        --relu-after 3,6 || return
    "$BIN" bench embed --json --model "$d/relu.safetensors" --batch-sizes 1,256 \
        --seconds "$EMBED_SECONDS" || return
    t0=$(now)
    "$BIN" query --index "$d/base.idx" --queries "$d/queries.txt" -k 1 -C 10 --timings \
        >"$d/hits.tsv" || return
    echo "{\"what\": \"query -k 1 -C 10\", \"seconds\": $(elapsed "$t0" "$(now)")}"
    if timeout 20 "$PYTHON" -c 'import rapidfuzz, numpy' >/dev/null 2>&1; then
        timed "rapidfuzz cdist" "$PYTHON" tools/bench_cdist.py "$d/base.txt" "$d/queries.txt" \
            "$d/exact.npy" || return
        "$PYTHON" -c 'import sys, numpy as np
exact = np.load(sys.argv[1])
found = {}
for line in open(sys.argv[2]):
    q, rank, distance = line.split("\t")[:3]
    found[int(q)] = int(distance)
hits = sum(found.get(i + 1) == d for i, d in enumerate(exact))
print("{\"what\": \"recall@1 at C = 10\", \"recall\": %.4f}" % (hits / len(exact)))' \
            "$d/exact.npy" "$d/hits.tsv"
    fi
}
if have python3 && "$BIN" train --help 2>/dev/null | grep -q -- --arch; then
    export -f cnn_ed_check now elapsed
    export WORK BIN PYTHON CNN_ED_BASE CNN_ED_QUERIES CNN_ED_EPOCHS EMBED_SECONDS
    STEP_NOTE=
    step cnn_ed cnn_ed.json bash -c cnn_ed_check
else
    echo "cnn_ed|-|SKIPPED|0.0|0|cnn_ed.json|no python3 or a binary without --arch" >>"$SUMMARY_ROWS"
fi
[ -n "${GPU_CHECK_WORK:-}" ] || rm -rf "$WORK"

# -------------------------------------------------------------------------- summary

TOTAL=$(elapsed "$START" "$(now)")
{
    echo "megashtein-gpu GPU check, $(date -u +%FT%TZ)"
    echo "HEAD: $(grep -m 1 -o '^HEAD: [0-9a-f]\{40\}' "$OUTDIR/git.txt" | sed 's/^HEAD: //') (git.txt has the tree's state)"
    echo "adapter: ${SELECTED:-none}"
    echo "scale: $SCALE; budget ${BUDGET} s; total wall ${TOTAL} s"
    echo
    printf '%-20s %4s %-8s %8s %7s  %-24s %s\n' step rc status wall_s limit output note
    while IFS='|' read -r name rc status wall limit out text; do
        printf '%-20s %4s %-8s %8s %7s  %-24s %s\n' "$name" "$rc" "$status" "$wall" "$limit" "$out" "$text"
    done <"$SUMMARY_ROWS"
    echo
    echo "notes:"
    cat "$NOTES"
    echo "- each step's stderr is in <step>.log; knn_b*.json and the other .json files hold one JSON value per line"
    echo "- info: git.txt env.txt nvidia-smi.txt vulkaninfo.txt devices.txt"
    echo "- failed or timed-out steps: $(cut -d'|' -f3 "$SUMMARY_ROWS" | grep -cE 'FAILED|TIMEOUT')"
} >"$OUTDIR/summary.txt"
BAD=$(cut -d'|' -f3 "$SUMMARY_ROWS" | grep -cE 'FAILED|TIMEOUT')
rm -f "$SUMMARY_ROWS" "$NOTES"
cat "$OUTDIR/summary.txt"
# exit status: 0 when no step failed or timed out (skipped steps do not count)
[ "$BAD" -eq 0 ]
