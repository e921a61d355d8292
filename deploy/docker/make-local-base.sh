#!/usr/bin/env bash
# Makes the base images the Dockerfile builds on, where no container registry is
# reachable: a Debian root file system made by debootstrap from Debian's package
# mirror, imported with `docker import`.
#
#   deploy/docker/make-local-base.sh            the runtime base (Debian minbase)
#   deploy/docker/make-local-base.sh --builder  also a builder base: Debian with
#                                               clang and protoc, plus this
#                                               machine's Rust toolchain
#
# It prints the build arguments to hand to `docker build` (build-image.sh reads
# them). An image that already exists is kept; --force rebuilds it.
#
# Environment: VERITRAIL_BASE_SUITE (bookworm), VERITRAIL_BASE_MIRROR
# (http://deb.debian.org/debian). Needs root (debootstrap) and a Docker engine.
set -euo pipefail

suite="${VERITRAIL_BASE_SUITE:-bookworm}"
mirror="${VERITRAIL_BASE_MIRROR:-http://deb.debian.org/debian}"
runtime_tag="veritrail-local/debian:${suite}-slim"
builder_tag="veritrail-local/rust:${suite}"
builder=0
force=0
for arg in "$@"; do
  case "$arg" in
    --builder) builder=1 ;;
    --force) force=1 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make-local-base: unknown argument $arg" >&2; exit 2 ;;
  esac
done

log() { echo "make-local-base: $*" >&2; }

have_image() { [ "$force" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

need_debootstrap() {
  [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 2; }
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
  fi
}

# debootstrap SUITE into a fresh folder with the extra packages $1, strip what a
# container never uses, and import it as the image $2.
make_image() {
  local include="$1" tag="$2" extra="${3:-}"
  local root
  root="$(mktemp -d /var/tmp/veritrail-rootfs.XXXXXX)"
  # shellcheck disable=SC2064
  trap "rm -rf '$root'" RETURN
  log "debootstrap $suite ($include) into $root"
  debootstrap --variant=minbase ${include:+--include="$include"} \
    "$suite" "$root" "$mirror" >"$root.log" 2>&1 ||
    { tail -n 30 "$root.log" >&2; rm -f "$root.log"; exit 1; }
  rm -f "$root.log"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/log/*.log "$root"/var/log/apt/*
  find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} + 2>/dev/null || true
  [ -z "$extra" ] || "$extra" "$root"
  log "importing as $tag"
  tar --numeric-owner -C "$root" -c . |
    docker import \
      --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["/bin/bash"]' - "$tag" >/dev/null
}

# The builder needs a Rust toolchain, and none can be downloaded here: copy this
# machine's (the one that builds the project) into the image.
add_rust_toolchain() {
  local root="$1" sysroot cargo
  sysroot="$(rustc --print sysroot)"
  cargo="$(command -v cargo)"
  if command -v rustup >/dev/null 2>&1; then cargo="$(rustup which cargo)"; fi
  log "copying the Rust toolchain from $sysroot"
  mkdir -p "$root/usr/local/cargo"
  cp -a "$sysroot/." "$root/usr/local/cargo/"
  install -m 0755 "$cargo" "$root/usr/local/cargo/bin/cargo"
  # Fetching crates goes through whatever certificate authorities this machine
  # trusts (a proxy's included).
  if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  fi
}

need_debootstrap_once() { if ! have_image "$1"; then need_debootstrap; fi; }

need_debootstrap_once "$runtime_tag"
if have_image "$runtime_tag"; then
  log "$runtime_tag exists (--force rebuilds it)"
else
  make_image "" "$runtime_tag"
fi
args="--build-arg RUNTIME_IMAGE=$runtime_tag"

if [ "$builder" = 1 ]; then
  need_debootstrap_once "$builder_tag"
  if have_image "$builder_tag"; then
    log "$builder_tag exists (--force rebuilds it)"
  else
    make_image "ca-certificates,build-essential,clang,libclang-dev,protobuf-compiler,pkg-config" \
      "$builder_tag" add_rust_toolchain
  fi
  args="$args --build-arg BUILDER_IMAGE=$builder_tag"
fi
echo "$args"
