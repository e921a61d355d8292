#!/usr/bin/env bash
# Builds the Veritrail image from deploy/docker/Dockerfile.
#
#   deploy/docker/build-image.sh [--tag TAG] [--local-base] [--prebuilt DIR]
#
#   --tag TAG       the image's name (default veritrail:latest)
#   --local-base    no registry: make the base images with debootstrap first
#                   (make-local-base.sh) and build on them
#   --prebuilt DIR  package DIR/veritraild and DIR/veritrail, already built on
#                   this Debian release (e.g. target/release), instead of
#                   compiling the workspace inside the build (which compiles
#                   RocksDB: about 20 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."

tag="veritrail:latest"
local_base=0
prebuilt=""
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) tag="$2"; shift 2 ;;
    --local-base) local_base=1; shift ;;
    --prebuilt) prebuilt="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-image: unknown argument $1" >&2; exit 2 ;;
  esac
done

args=()
if [ "$local_base" = 1 ]; then
  if [ -n "$prebuilt" ]; then
    # Packaging prebuilt binaries needs only a shell in the build stage: the
    # runtime base has one.
    read -r -a args <<<"$(deploy/docker/make-local-base.sh)"
    runtime="${args[1]#RUNTIME_IMAGE=}"
    args+=(--build-arg "BUILDER_IMAGE=$runtime")
  else
    read -r -a args <<<"$(deploy/docker/make-local-base.sh --builder)"
  fi
fi

if [ -n "$prebuilt" ]; then
  for bin in veritraild veritrail; do
    [ -x "$prebuilt/$bin" ] || { echo "build-image: $prebuilt/$bin is missing" >&2; exit 2; }
  done
  # A context of the two binaries alone: nothing else is sent to the engine.
  context="$(mktemp -d /var/tmp/veritrail-context.XXXXXX)"
  trap 'rm -rf "$context"' EXIT
  mkdir "$context/prebuilt"
  cp "$prebuilt/veritraild" "$prebuilt/veritrail" "$context/prebuilt/"
  # Debug builds carry hundreds of megabytes of debug info the image never uses.
  if command -v strip >/dev/null 2>&1; then
    strip --strip-debug "$context/prebuilt/veritraild" "$context/prebuilt/veritrail"
  fi
  args+=(--build-arg BINARIES=prebuilt)
else
  context=.
fi

# --network host: the source build fetches crates; a build container on the
# default bridge may not reach the registry the host reaches.
docker build --network host -f deploy/docker/Dockerfile "${args[@]}" -t "$tag" "$context"
# The legacy builder leaves the build stage behind as an untagged image.
docker image prune --force --filter label=org.veritrail.stage=build >/dev/null
docker image inspect --format 'build-image: {{index .RepoTags 0}} {{.Size}} bytes' "$tag"
