#!/usr/bin/env bash
# Proves the on-device install works on arm64: a Debian bookworm arm64 root run under qemu-user installs edge-pose
# as a device would (pip, constraints.txt, '.[litert]' and '.[openvino]', no TensorFlow), predicts with bundles
# converted on this x86 host, and must agree with the x86 keypoints within each precision's tolerance.
# Needs root (debootstrap, chroot, mounts, binfmt_misc). See docs/devices.md. Exit 0 PASS, 1 FAIL, 2 could not run.
#
# Environment: EDGE_POSE_ARM64_ROOT (cached root, default /var/cache/edge-pose/arm64-root), EDGE_POSE_ARM64_WORK
# (bundles and outputs), EDGE_POSE_PYTHON (x86 venv python with the convert extra, default .venv/bin/python),
# EDGE_POSE_SHARED (the shared/ folder), EDGE_POSE_ARM64_CPU (cortex-a76, default, or cortex-a72),
# EDGE_POSE_ARM64_MIRROR (Debian mirror).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=$(realpath -m "${EDGE_POSE_SHARED:-$REPO/../shared}")
ROOT=$(realpath -m "${EDGE_POSE_ARM64_ROOT:-/var/cache/edge-pose/arm64-root}")
WORK=$(realpath -m "${EDGE_POSE_ARM64_WORK:-/var/cache/edge-pose/arm64-work}")
PY=${EDGE_POSE_PYTHON:-$REPO/.venv/bin/python}
CPU=${EDGE_POSE_ARM64_CPU:-cortex-a76}
MIRROR=${EDGE_POSE_ARM64_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
ROOT_RECIPE="edge-pose arm64 root v1: $SUITE minbase python3 python3-venv ca-certificates"
EMU="nice -n 15"   # the emulated parts: other work shares this machine's cores
HOST="nice -n 10"

MODEL=$SHARED/models/simplebaseline-mbv2-ultralight/model.onnx
COCO=$SHARED/data/coco-mini
DETS=$COCO/test_coco_det_AP_H_56.json
# what the model file cannot tell (from the model's NOTICE: RGB/255 then ImageNet mean/std, NCHW 256x192)
FACTS=(--input-size 256,192 --layout NCHW --color rgb --mean 123.675,116.28,103.53 --std 58.395,57.12,57.375
       --keypoints coco17 --output hybridsequential0_conv7_fwd)
CALIB=(--calib "$COCO/test_coco.json" --images "$COCO" --boxes "$DETS")
NAME=simplebaseline-mbv2-ultralight
# bundle suffix, precision, venv (extra) inside the root
BUNDLES=("tflite-int8 int8 litert" "openvino-fp32 fp32 openvino")

T0=$SECONDS
say() { echo "arm64-check: $*"; }
die() { echo "arm64-check: error: $*" >&2; exit 2; }
elapsed() { local s=$((SECONDS - ${1:-$T0})); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

last_line() { tail -c 300 "$1" | tr '\r' '\n' | grep -v '^\s*$' | tail -1 | cut -c1-100; }
# Run a long command with its output in LOG and a progress line every 30 s; on failure show the log's tail.
run_logged() {
  local label=$1 log=$2 start=$SECONDS; shift 2
  say "$label ..."
  "$@" >"$log" 2>&1 &
  local pid=$! rc=0
  CHILD=$pid
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && say "  $label: $(elapsed "$start") so far; last: $(last_line "$log")"
  done
  wait "$pid" || rc=$?
  CHILD=
  if [ "$rc" -ne 0 ]; then
    tail -n 25 "$log" >&2
    die "$label failed (exit $rc); full log: $log"
  fi
  say "  $label: done in $(elapsed "$start")"
}

# --- preconditions -------------------------------------------------------------------------------------------
[ "$(uname -m)" = x86_64 ] || die "runs on an x86-64 host (this is $(uname -m)): it compares arm64 against x86"
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, bind mounts, binfmt_misc): run it with sudo"
for f in "$MODEL" "$COCO/test_coco.json" "$DETS"; do
  [ -f "$f" ] || die "shared material missing: $f (set EDGE_POSE_SHARED to the shared/ folder)"
done
[ -x "$PY" ] || die "no x86 python at $PY: run make (it builds .venv) or set EDGE_POSE_PYTHON"
case $CPU in
  cortex-a76) MIDR=(0x41 0x4 0xd0b 1)  # implementer, variant, part, revision: as a Pi 5's kernel reports them
              FEATURES="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop"
              FEATURES+=" asimddp" ;;
  cortex-a72) MIDR=(0x41 0x0 0xd08 3); FEATURES="fp asimd evtstrm crc32 cpuid" ;;
  *) die "EDGE_POSE_ARM64_CPU=$CPU: use cortex-a76 (Raspberry Pi 5's core) or cortex-a72 (Pi 4's)" ;;
esac
export QEMU_CPU=$CPU  # read by qemu-aarch64 at every exec into the root (and passed on inside it)
for d in "$ROOT" "$WORK"; do
  case $d in /*/*) ;; *) die "$d is too close to / to be a cache folder this script may delete" ;; esac
done
mkdir -p "$(dirname "$ROOT")" "$WORK"
# the top-level packages (what pyproject's packages.find includes): their sources decide the venvs and the bundles
mapfile -t PACKAGES < <(cd "$REPO" && for d in */__init__.py; do dirname "$d"; done)
exec 9>"$ROOT.lock"
flock -n 9 || die "another arm64-check holds $ROOT.lock"

# --- host packages and binfmt_misc ---------------------------------------------------------------------------
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  run_logged "apt-get update" "$WORK/apt-update.log" apt-get -o DPkg::Lock::Timeout=600 update -qq
  run_logged "installing ${need[*]}" "$WORK/apt-install.log" \
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}"
fi
QEMU=$(command -v qemu-aarch64-static)
BINFMT=/proc/sys/fs/binfmt_misc
mountpoint -q "$BINFMT" || mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount binfmt_misc on $BINFMT"
[ -e "$BINFMT/qemu-aarch64" ] || update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
if [ ! -e "$BINFMT/qemu-aarch64" ]; then
  # binfmt-support could not (no systemd, say): register it ourselves. F opens the interpreter now, so it also
  # works inside the chroot without a copy there.
  magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'  # ELF64 LSB, EM_AARCH64
  mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
  printf '%s' ":qemu-aarch64:M::$magic:$mask:$QEMU:F" >"$BINFMT/register" 2>/dev/null ||
    die "the kernel refused to register qemu-aarch64 in $BINFMT/register (see docs/devices.md)"
fi
grep -qx enabled "$BINFMT/qemu-aarch64" || echo 1 >"$BINFMT/qemu-aarch64" || die "cannot enable $BINFMT/qemu-aarch64"
say "qemu-aarch64 $(head -1 "$BINFMT/qemu-aarch64") ($(sed -n 's/^interpreter //p' "$BINFMT/qemu-aarch64"));" \
    "emulating $CPU"

# --- mounts: recorded, and undone on every exit --------------------------------------------------------------
MOUNTS=()
CHILD=
cleanup() {
  local i
  set +e  # undo everything even when a step of it fails
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then  # interrupted: stop the step before unmounting under it
    pkill -TERM -P "$CHILD" 2>/dev/null; kill -TERM "$CHILD" 2>/dev/null; sleep 2
    pkill -KILL -P "$CHILD" 2>/dev/null; kill -KILL "$CHILD" 2>/dev/null; wait "$CHILD" 2>/dev/null
  fi
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTS[i]}" 2>/dev/null || umount -l "${MOUNTS[i]}" 2>/dev/null ||
      echo "arm64-check: warning: could not unmount ${MOUNTS[i]}" >&2
  done
  MOUNTS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM
bind() {  # bind SRC DST [ro]
  mkdir -p "$2" 2>/dev/null || true
  mount --bind "$1" "$2"
  MOUNTS+=("$2")
  [ "${3:-}" = ro ] && mount -o remount,bind,ro "$2"
  return 0
}
mounts_under() { findmnt -rn -o TARGET | awk -v d="$1" 'index($0, d "/") == 1 || $0 == d' | sort -r; }
# Delete a root only when nothing is mounted inside it: a bind mount of /dev or of a work folder would be deleted
# through. debootstrap's second stage mounts /proc and /sys itself and may leave them behind when killed.
safe_rm() {
  local m
  for m in $(mounts_under "$1"); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  m=$(mounts_under "$1" | head -1)
  [ -z "$m" ] || die "refusing to delete $1: $m is still mounted"
  rm -rf --one-file-system "$1"
}

# --- the arm64 root (cached) ---------------------------------------------------------------------------------
if [ -f "$ROOT/.edge-pose-root" ] && [ "$(cat "$ROOT/.edge-pose-root")" = "$ROOT_RECIPE" ]; then
  say "reusing the arm64 root $ROOT"
else
  T_ROOT=$SECONDS
  [ -e "$ROOT" ] && { say "$ROOT is not a finished root of this recipe: rebuilding"; safe_rm "$ROOT"; }
  safe_rm "$ROOT.partial"
  run_logged "debootstrap $SUITE arm64 (first stage: download, unpack)" "$WORK/debootstrap-1.log" \
    $EMU debootstrap --arch=arm64 --variant=minbase --foreign --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$ROOT.partial" "$MIRROR"
  install -m 0755 "$QEMU" "$ROOT.partial/usr/bin/qemu-aarch64-static"  # for hosts registered without F
  run_logged "debootstrap second stage (emulated: dpkg configures every package)" "$WORK/debootstrap-2.log" \
    $EMU chroot "$ROOT.partial" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin QEMU_CPU="$CPU" \
    /debootstrap/debootstrap --second-stage
  [ -z "$(mounts_under "$ROOT.partial")" ] || die "debootstrap left mounts in $ROOT.partial"
  echo "$ROOT_RECIPE" >"$ROOT.partial/.edge-pose-root"
  mv "$ROOT.partial" "$ROOT"
  say "arm64 root built in $(elapsed "$T_ROOT")"
fi
chroot "$ROOT" /bin/true ||
  die "the arm64 root does not run: qemu-aarch64 is registered but chroot $ROOT /bin/true failed"

# A kernel writes /proc/cpuinfo for the CPU it runs on; qemu-user passes the x86 host's through, and XNNPACK's
# cpuinfo crashes parsing it (seen: segfault in allocate_tensors). Show the emulated core's, as its kernel would.
RUN=$WORK/run
safe_rm "$RUN"
mkdir -p "$RUN/x86" "$RUN/arm64"
for ((i = 0; i < $(nproc); i++)); do
  printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: %s\nCPU architecture: 8\n' \
    "$i" "$FEATURES" "${MIDR[0]}"
  printf 'CPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "${MIDR[@]:1}"
done >"$WORK/cpuinfo-$CPU"

# the device install reaches PyPI through the host's network and trust store (which may hold a proxy's CA)
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/host-ca.crt"
IN=(env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 QEMU_CPU="$CPU" PIP_DISABLE_PIP_VERSION_CHECK=1
    PIP_DEFAULT_TIMEOUT=180 PIP_PROGRESS_BAR=off EDGE_POSE_CACHE_DIR=/mnt/work/arm64/cache)
[ -f "$ROOT/etc/ssl/certs/host-ca.crt" ] && IN+=(PIP_CERT=/etc/ssl/certs/host-ca.crt)
for v in PIP_INDEX_URL http_proxy https_proxy HTTP_PROXY HTTPS_PROXY no_proxy; do
  case ${!v:-} in http*|*,*|localhost*) IN+=("$v=${!v}") ;; esac
done
inroot() { $EMU chroot "$ROOT" "${IN[@]}" "$@"; }

mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
bind "$WORK/cpuinfo-$CPU" "$ROOT/proc/cpuinfo" ro
mount -t sysfs -o ro sysfs "$ROOT/sys"; MOUNTS+=("$ROOT/sys")  # OpenVINO's TBB/hwloc segfault without it
bind /dev "$ROOT/dev"
bind "$SHARED" "$ROOT/mnt/shared" ro
bind "$RUN" "$ROOT/mnt/work"

# --- install edge-pose in the root as a device would ---------------------------------------------------------
# The source is copied (tracked and new files, as they are now): pip builds from it and must not write into the repo.
SRC=$ROOT/opt/edge-pose/src
rm -rf --one-file-system "$SRC" && mkdir -p "$SRC"
if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
  git -C "$REPO" ls-files -z --cached --others --exclude-standard |
    tar -C "$REPO" --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -C "$SRC" -xf -
else
  tar -C "$REPO" --exclude=.venv --exclude=.git --exclude=build -cf - . | tar -C "$SRC" -xf -
fi
# what pip installs (scripts, tests and docs do not reach a device)
SRC_HASH=$(cd "$SRC" && find pyproject.toml constraints.txt README.md "${PACKAGES[@]}" -type f -print0 | sort -z |
           xargs -0 sha256sum | sha256sum | cut -c1-16)
for b in "${BUNDLES[@]}"; do
  read -r _ _ extra <<<"$b"
  venv=/opt/edge-pose/venv-$extra
  if [ "$(cat "$ROOT$venv/.edge-pose-src" 2>/dev/null)" = "$SRC_HASH" ]; then
    say "venv-$extra is up to date with this source ($SRC_HASH)"
    continue
  fi
  [ -x "$ROOT$venv/bin/python" ] || inroot python3 -m venv "$venv"
  inroot "$venv/bin/pip" uninstall -q -y edge-pose >/dev/null 2>&1 || true  # same version: pip would keep the old
  run_logged "pip install -c constraints.txt '.[$extra]' (arm64, emulated)" "$WORK/pip-$extra.log" \
    $EMU chroot "$ROOT" "${IN[@]}" /bin/sh -c \
    "cd /opt/edge-pose/src && $venv/bin/pip install -c constraints.txt '.[$extra]'"
  echo "$SRC_HASH" >"$ROOT$venv/.edge-pose-src"
done
for b in "${BUNDLES[@]}"; do
  read -r _ _ extra <<<"$b"
  venv=/opt/edge-pose/venv-$extra
  # a device install has no TensorFlow (nor the converters' other heavy dependencies): prove it
  if inroot "$venv/bin/python" -c "import tensorflow" 2>"$RUN/tf-$extra.err"; then
    die "venv-$extra imports tensorflow: the device install must not pull it in"
  fi
  grep -q "No module named 'tensorflow'" "$RUN/tf-$extra.err" ||
    die "venv-$extra: import tensorflow failed, but not for want of it: $(tail -1 "$RUN/tf-$extra.err")"
  inroot "$venv/bin/python" -c "
import importlib.util, platform, sys
heavy = [m for m in ('tensorflow', 'keras', 'nncf', 'onnx', 'onnxruntime', 'torch') if importlib.util.find_spec(m)]
assert platform.machine() == 'aarch64', platform.machine()
print(f'venv-$extra: python {sys.version.split()[0]} on {platform.machine()}; import tensorflow fails as it should; '
      f'heavy modules present: {heavy or \"none\"}')
sys.exit(1 if heavy else 0)" | sed 's/^/arm64-check: /' || die "venv-$extra holds converter dependencies"
done

# --- convert on x86 (cached by the inputs that decide the bundles) -------------------------------------------
KEY=$( { sha256sum "$MODEL" | cut -d' ' -f1; echo "${FACTS[*]} ${CALIB[*]}"
         cd "$REPO" && cat constraints.txt pyproject.toml
         find "${PACKAGES[@]}" -type f \( -name '*.py' -o -name '*.toml' \) | sort | xargs sha256sum; } |
       sha256sum | cut -c1-16)
BUNDLE_DIR=$WORK/bundles/$KEY
if [ -f "$BUNDLE_DIR/.complete" ]; then
  say "reusing the x86-converted bundles in $BUNDLE_DIR"
else
  rm -rf --one-file-system "$WORK/bundles" && mkdir -p "$BUNDLE_DIR.partial"
  for b in "${BUNDLES[@]}"; do
    read -r suffix precision _ <<<"$b"
    run_logged "edge-pose convert --format ${suffix%-*} --precision $precision (x86)" "$WORK/convert-$suffix.log" \
      env PYTHONPATH="$REPO" $HOST "$PY" -m edge_pose.cli.main convert "$MODEL" "${FACTS[@]}" \
      --format "${suffix%-*}" --precision "$precision" "${CALIB[@]}" --out "$BUNDLE_DIR.partial"
    grep -E "^$NAME-$suffix " "$WORK/convert-$suffix.log" | sed 's/^/arm64-check:   fidelity vs source: /' || true
  done
  touch "$BUNDLE_DIR.partial/.complete"
  mv "$BUNDLE_DIR.partial" "$BUNDLE_DIR"
fi
bind "$BUNDLE_DIR" "$ROOT/mnt/bundles" ro

# --- predict on x86, then on arm64 ---------------------------------------------------------------------------
for b in "${BUNDLES[@]}"; do
  read -r suffix _ _ <<<"$b"
  run_logged "edge-pose predict $NAME-$suffix (x86)" "$RUN/x86/predict-$suffix.log" \
    env PYTHONPATH="$REPO" EDGE_POSE_CACHE_DIR="$RUN/x86/cache" $HOST "$PY" -m edge_pose.cli.main predict \
    "$BUNDLE_DIR/$NAME-$suffix" "$COCO" --boxes "$DETS" --out "$RUN/x86/$NAME-$suffix" --no-draw
done
say "edge-pose devices detect --explain (arm64, venv-openvino):"
inroot /opt/edge-pose/venv-openvino/bin/edge-pose devices detect --explain 2>/dev/null | sed 's/^/  | /' |
  tee "$RUN/detect.txt"
grep -q "^  | generic-arm64:" "$RUN/detect.txt" || die "the arm64 root was not detected as generic-arm64 (see above)"
say "NOTE: the per-frame times predict prints under arm64 are qemu-emulated and mean nothing about a device"
for b in "${BUNDLES[@]}"; do
  read -r suffix _ extra <<<"$b"
  run_logged "edge-pose predict $NAME-$suffix (arm64, venv-$extra, emulated)" "$RUN/arm64/predict-$suffix.log" \
    $EMU chroot "$ROOT" "${IN[@]}" "/opt/edge-pose/venv-$extra/bin/edge-pose" predict "/mnt/bundles/$NAME-$suffix" \
    /mnt/shared/data/coco-mini --boxes /mnt/shared/data/coco-mini/test_coco_det_AP_H_56.json \
    --out "/mnt/work/arm64/$NAME-$suffix" --no-draw
done

# --- a short bench: proves bench runs there; its numbers are not device figures ------------------------------
EMU_NOTE="EMULATED: qemu-user running a $CPU on an x86 host; these timings mean nothing about any device"
EMU_NOTE+=" and must never be reported as device figures"
say "edge-pose bench (arm64, 3 runs each). $EMU_NOTE"
for b in "${BUNDLES[@]}"; do
  read -r suffix _ extra <<<"$b"
  inroot "/opt/edge-pose/venv-$extra/bin/edge-pose" bench "/mnt/bundles/$NAME-$suffix" --runs 3 --warmup 1 \
    2>"$RUN/arm64/bench-$suffix.err" | sed "s/^/  [EMULATED] /" ||
    { tail -5 "$RUN/arm64/bench-$suffix.err" >&2; die "edge-pose bench failed on arm64 ($suffix)"; }
done
say "$EMU_NOTE"

# --- compare -------------------------------------------------------------------------------------------------
pairs=()
for b in "${BUNDLES[@]}"; do
  read -r suffix precision _ <<<"$b"
  pairs+=("$NAME-$suffix:$precision:$RUN/x86/$NAME-$suffix:$RUN/arm64/$NAME-$suffix")
done
rc=0
PYTHONPATH="$REPO" "$PY" "$REPO/scripts/arm64_compare.py" "${pairs[@]}" || rc=$?
say "total $(elapsed) (root $ROOT, work $WORK)"
exit "$rc"
