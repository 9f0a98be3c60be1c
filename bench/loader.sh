#!/usr/bin/env bash
# The loader against pygrub (issue 18 item 5): both boot the same disk
# images the way libxl runs a bootloader (simple0 output into a fresh
# output directory); the loader also measures into a fresh swtpm TPM 2.0,
# hashing included, pygrub measures nothing. Two vTPMs: one set up as
# swtpm_setup sets up production vTPMs (its --pcr-banks default, sha256
# only; XCP-ng's vTPMs too), and swtpm's unprovisioned allocation, all
# four banks (sha1, sha256, sha384, sha512), the worst case. Median wall times of RUNS per image,
# alternating the tools so both see the same load; the ratio; the
# loader's own split into reading the disk (the picker, which streams
# the chosen files into the output directory), hashing and the vTPM.
# With root, the restricted mode (--runas) is timed too. Printed, never
# asserted: the machine is shared.
#
#   bench/loader.sh        # IMAGES=3 KERNEL_MB=8 INITRD_MB=32 RUNS=7
#   BENCH_SHORT=1 bench/loader.sh   # CI: one small image, 3 runs
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${BENCH_SHORT:-}" ]; then
  IMAGES=${IMAGES:-1} KERNEL_MB=${KERNEL_MB:-2} INITRD_MB=${INITRD_MB:-4} RUNS=${RUNS:-3}
fi

IMAGES=${IMAGES:-3}
KMB=${KERNEL_MB:-8}
IMB=${INITRD_MB:-32}
RUNS=${RUNS:-7}
PYGRUB=${PYGRUB:-/usr/lib/xen-4.17/bin/pygrub}
for c in mkfs.ext4 swtpm swtpm_setup go "$PYGRUB"; do
  command -v "$c" >/dev/null || { echo "bench/loader: $c missing (run make deps; pygrub is in xen-utils-4.17)" >&2; exit 2; }
done

dir=.cache/bench/loader-${IMAGES}x${KMB}+${IMB}
mkdir -p "$dir/img" "$dir/src" .cache/bench
CGO_ENABLED=0 go build -trimpath -o .cache/bench/mkkernel ./bench/mkkernel
for i in $(seq 0 $((IMAGES - 1))); do
  img=$dir/img/guest$i.img
  [ -f "$img" ] && continue
  root=$dir/src/root$i
  mkdir -p "$root/boot/grub"
  .cache/bench/mkkernel -bytes $((KMB << 20)) -seed "$i" -o "$root/boot/vmlinuz"
  head -c $((IMB << 20)) /dev/urandom >"$root/boot/initrd.img"
  printf "set default=0\nset timeout=5\nmenuentry 'Debian GNU/Linux %d' {\n\tlinux /boot/vmlinuz root=/dev/xvda1 ro quiet\n\tinitrd /boot/initrd.img\n}\n" "$i" >"$root/boot/grub/grub.cfg"
  mkfs.ext4 -q -F -d "$root" "$img.tmp" $((KMB + IMB + 16))M && mv "$img.tmp" "$img"
done
# The loader runs its picker from its own binary as --runas's uid: it
# must be world-executable, as it is in /usr/lib.
bindir=$(mktemp -d /tmp/vtpmboot-bench.XXXXXX)
work=$(mktemp -d /tmp/vtpmboot-bench-w.XXXXXX)
swtpm_pid=""
cleanup() { [ -n "$swtpm_pid" ] && kill "$swtpm_pid" 2>/dev/null; rm -rf "$bindir" "$work"; }
trap cleanup EXIT
chmod 755 "$bindir"
CGO_ENABLED=0 go build -trimpath -o "$bindir/vtpmboot-loader" ./cmd/vtpmboot-loader
uuid=3f2504e0-4f89-41d3-9a0c-0305e82c3301
cat "$dir"/img/*.img >/dev/null # page cache warm for both

now() { date +%s%N; }
mkdir -p "$work/sha256"
swtpm_setup --tpm2 --tpmstate "$work/sha256" --pcr-banks sha256 --overwrite >/dev/null 2>&1 \
  || { echo "bench/loader: swtpm_setup failed" >&2; exit 1; }
# fresh_tpm [STATE] starts a new swtpm for one run (not timed): the loader
# measures only into a vTPM whose PCRs 4 and 5 are zero. STATE is a
# provisioned state to start from; none: swtpm's own fresh state.
fresh_tpm() {
  [ -n "$swtpm_pid" ] && { kill "$swtpm_pid" 2>/dev/null; wait "$swtpm_pid" 2>/dev/null || true; }
  rm -rf "$work/tpm" && mkdir -p "$work/tpm/state"
  if [ -n "${1:-}" ]; then cp "$1"/tpm2-00.permall "$work/tpm/state/"; fi
  swtpm socket --tpm2 --tpmstate dir="$work/tpm/state" --server type=unixio,path="$work/tpm/$uuid.sock" \
    --ctrl type=unixio,path="$work/tpm/$uuid.ctrl" --flags not-need-init,startup-clear >/dev/null 2>&1 &
  swtpm_pid=$!
  for _ in $(seq 200); do [ -S "$work/tpm/$uuid.ctrl" ] && [ -S "$work/tpm/$uuid.sock" ] && break; sleep 0.01; done
  sleep 0.05
}
out_dir() { rm -rf "$work/out" && mkdir -m 700 -p "$work/out/bootloader.1.d" && : >"$work/out/bootloader.1.out"; }
outargs() { echo "--output=$work/out/bootloader.1.out --output-format=simple0 --output-directory=$work/out/bootloader.1.d"; }

runas=""
if [ "$(id -u)" = 0 ]; then runas=$((131072 + $$ % 1000)); fi
: >"$work/loader.t"; : >"$work/loader4.t"; : >"$work/pygrub.t"; : >"$work/restricted.t"; : >"$work/phases"; : >"$work/phases4"
# loader_run TIMES PHASES [STATE] [ARGS...]: one timed loader run.
loader_run() {
  local times=$1 phases=$2 state=$3 s; shift 3
  fresh_tpm "$state"; out_dir
  s=$(now)
  "$bindir/vtpmboot-loader" "$@" $(outargs) --vtpm-uuid=$uuid --vtpm-socket-dir="$work/tpm" --state-dir= "$img" >"$work/log" 2>&1 \
    || { echo "bench/loader: loader failed:"; cat "$work/log"; exit 1; } >&2
  echo $(( ($(now) - s) / 1000 )) >>"$times"
  [ -z "$phases" ] || sed -n 's/.*phases read \([0-9]*\)us hash \([0-9]*\)us tpm \([0-9]*\)us.*/\1 \2 \3/p' "$work/log" >>"$phases"
}
for _ in $(seq "$RUNS"); do
  for i in $(seq 0 $((IMAGES - 1))); do
    img=$dir/img/guest$i.img
    loader_run "$work/loader.t" "$work/phases" "$work/sha256"
    loader_run "$work/loader4.t" "$work/phases4" ""
    out_dir
    s=$(now)
    TERM=dumb "$PYGRUB" $(outargs) -q "$img" >"$work/log" 2>&1 \
      || { echo "bench/loader: pygrub failed:"; cat "$work/log"; exit 1; } >&2
    echo $(( ($(now) - s) / 1000 )) >>"$work/pygrub.t"
    if [ -n "$runas" ]; then
      loader_run "$work/restricted.t" "" "$work/sha256" --runas=$runas --quiet
    fi
  done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END{ if (NR==0) {print "-"; exit} if (NR%2) printf "%.1f", a[(NR+1)/2]/1000; else printf "%.1f", (a[NR/2]+a[NR/2+1])/2000 }'; }
col() { awk -v c="$2" '{print $c}' "$1" >"$1.$2"; median "$1.$2"; }
lm=$(median "$work/loader.t") pm=$(median "$work/pygrub.t")
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
echo "loader vs pygrub: $IMAGES ext4 images (GRUB 2, $KMB MiB kernel + $IMB MiB initrd), median of $((RUNS * IMAGES)) runs each"
printf '%-66s %9s ms\n' "pygrub -q (no measurement)" "$pm"
l4=$(median "$work/loader4.t")
printf '%-66s %9s ms\n' "vtpmboot-loader, swtpm TPM 2.0 provisioned by swtpm_setup (sha256)" "$lm"
printf '%-66s %9s ms\n' "vtpmboot-loader, swtpm TPM 2.0 unprovisioned (4 banks)" "$l4"
[ -n "$runas" ] && printf '%-66s %9s ms\n' "vtpmboot-loader --runas=$runas (restricted, sha256)" "$(median "$work/restricted.t")"
echo "loader split, sha256 (median): reading $(col "$work/phases" 1) ms (wall, hashing overlapped), hashing $(col "$work/phases" 2) ms (slowest bank busy), TPM $(col "$work/phases" 3) ms; the rest is process start and output"
echo "loader split, 4 banks (median): reading $(col "$work/phases4" 1) ms, hashing $(col "$work/phases4" 2) ms, TPM $(col "$work/phases4" 3) ms"
ratio=$(awk -v l="$lm" -v p="$pm" 'BEGIN{ if (p>0) printf "%.2f", l/p; else print "inf" }')
ratio4=$(awk -v l="$l4" -v p="$pm" 'BEGIN{ if (p>0) printf "%.2f", l/p; else print "inf" }')
echo "ratio loader/pygrub: $ratio with sha256 (target <= 0.5), $ratio4 with 4 banks"
