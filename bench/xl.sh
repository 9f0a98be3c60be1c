#!/usr/bin/env bash
# Fleet prediction benchmark (issue 3 item 6): `pcrsim predict --xl-config
# DIR --format json` over 500 xl configs that share 10 disk images (each a
# bare ext4 filesystem with a GRUB2 grub.cfg, a KERNEL_MB kernel and an
# INITRD_MB initrd of random bytes), against hashing those 10 kernels and
# 10 initrds once (bench/hashonce: sha1+sha256 in one pass with the same
# StreamHasher pcrsim uses; openssl sha1 then sha256 printed for context).
# Target: fleet wall time <= 1.3x the baseline. Best wall time of RUNS,
# alternating; printed, never asserted.
#
#   bench/xl.sh                  # GUESTS=500 IMAGES=10 KERNEL_MB=12 INITRD_MB=16 RUNS=3
set -euo pipefail
cd "$(dirname "$0")/.."

GUESTS=${GUESTS:-500}
IMAGES=${IMAGES:-10}
KMB=${KERNEL_MB:-12}
IMB=${INITRD_MB:-16}
RUNS=${RUNS:-3}
for c in mkfs.ext4 openssl /usr/bin/time go; do
  command -v "$c" >/dev/null || { echo "bench/xl: $c missing (run make deps)" >&2; exit 2; }
done

dir=.cache/bench/xl2-${IMAGES}x${KMB}+${IMB} # xl2: kernels from mkkernel
mkkernel=.cache/bench/mkkernel
mkdir -p .cache/bench
CGO_ENABLED=0 go build -trimpath -o "$mkkernel" ./bench/mkkernel
mkdir -p "$dir/img" "$dir/src"
for i in $(seq 0 $((IMAGES - 1))); do
  img=$dir/img/guest$i.img
  [ -f "$img" ] && continue
  root=$dir/src/root$i
  mkdir -p "$root/boot/grub"
  "$mkkernel" -bytes $((KMB << 20)) -seed "$i" -o "$root/boot/vmlinuz"
  head -c $((IMB << 20)) /dev/urandom >"$root/boot/initrd.img"
  printf "set timeout=5\nmenuentry 'Linux %d' {\n\tlinux /boot/vmlinuz root=/dev/xvda ro console=hvc0\n\tinitrd /boot/initrd.img\n}\n" "$i" >"$root/boot/grub/grub.cfg"
  mkfs.ext4 -q -F -d "$root" "$img.tmp" $((KMB + IMB + 16))M && mv "$img.tmp" "$img"
done
cfgs=$dir/xl-$GUESTS
if [ ! -d "$cfgs" ]; then
  mkdir -p "$cfgs.tmp"
  for g in $(seq 0 $((GUESTS - 1))); do
    printf 'name = "guest%03d"\ntype = "hvm"\nkernel = "/usr/lib/vtpmboot/vmlinuz"\nextra = "console=hvc0"\ndisk = [ "format=raw, vdev=xvda, access=ro, target=%s" ]\n' \
      "$g" "$PWD/$dir/img/guest$((g % IMAGES)).img" >"$cfgs.tmp/guest$g.cfg"
  done
  mv "$cfgs.tmp" "$cfgs"
fi
files=()
for i in $(seq 0 $((IMAGES - 1))); do files+=("$dir/src/root$i/boot/vmlinuz" "$dir/src/root$i/boot/initrd.img"); done

bin=.cache/bench/pcrsim
CGO_ENABLED=0 go build -trimpath -o "$bin" ./cmd/pcrsim
CGO_ENABLED=0 go build -trimpath -o .cache/bench/hashonce ./bench/hashonce
# Warm the page cache for both sides.
cat "$dir"/img/*.img "${files[@]}" >/dev/null

tfile=$(mktemp)
trap 'rm -f "$tfile"' EXIT
best_fleet="" best_base="" best_ossl="" rss=""
faster() { [ -z "$2" ] || awk -v a="$1" -v b="$2" 'BEGIN{exit !(a<b)}'; }
for _ in $(seq "$RUNS"); do
  /usr/bin/time -o "$tfile" -f '%e %M' "$bin" predict --xl-config "$cfgs" --format json >"$dir/out.json" 2>"$dir/err.txt"
  read -r w m < <(tail -1 "$tfile")
  if faster "$w" "$best_fleet"; then best_fleet=$w; rss=$m; fi
  w=$(.cache/bench/hashonce "${files[@]}")
  if faster "$w" "$best_base"; then best_base=$w; fi
  s=$(date +%s.%N)
  openssl dgst -sha1 "${files[@]}" >/dev/null
  openssl dgst -sha256 "${files[@]}" >/dev/null
  w=$(awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN{printf "%.3f", e-s}')
  if faster "$w" "$best_ossl"; then best_ossl=$w; fi
done
ratio=$(awk -v p="$best_fleet" -v b="$best_base" 'BEGIN{ if (b>0) printf "%.2f", p/b; else print "inf" }')
mb=$(( IMAGES * (KMB + IMB) ))
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
echo "fleet: $GUESTS xl configs sharing $IMAGES images ($KMB MiB kernel + $IMB MiB initrd each, $mb MiB distinct), best of $RUNS"
printf '%-58s %7s s  peak RSS %s MiB\n' "pcrsim predict --xl-config DIR --format json" "$best_fleet" "$(awk -v k="$rss" 'BEGIN{printf "%.1f", k/1024}')"
printf '%-58s %7s s\n' "baseline: hash the $((IMAGES * 2)) files once (Go StreamHasher, sha1+sha256)" "$best_base"
printf '%-58s %7s s\n' "context: openssl dgst -sha1, then -sha256, same files" "$best_ossl"
echo "pcrsim: $(tail -1 "$dir/err.txt")"
echo "ratio fleet/baseline: $ratio"
if awk -v r="$ratio" 'BEGIN{exit !(r<=1.3)}'; then
  echo "target met: ratio $ratio <= 1.3"
else
  echo "target NOT met: ratio $ratio (target <= 1.3)"
fi
