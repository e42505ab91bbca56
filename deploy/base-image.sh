#!/usr/bin/env bash
# Build a local Debian bookworm base image with Python 3.11 (gradserve-base:bookworm) for hosts with no registry.
#
# Usage: deploy/base-image.sh [--force]
#   GRADSERVE_BASE_IMAGE  image tag to create           (default gradserve-base:bookworm)
#   DEBIAN_MIRROR         Debian mirror for debootstrap (default: the one apt on this host uses)
#   GRADSERVE_CACHE_DIR   where the root filesystem tarball is cached (default deploy/.cache)
#
# Idempotent: exits at once when the image exists. When only the cached tarball exists (for example
# after `docker system prune`), it is re-imported without running debootstrap again.
# Needs root (debootstrap chroots) and the Docker engine; installs debootstrap with apt-get if missing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE="${GRADSERVE_BASE_IMAGE:-gradserve-base:bookworm}"
SUITE=bookworm
CACHE_DIR="${GRADSERVE_CACHE_DIR:-$HERE/.cache}"
# Bump when the package set or the clean-up changes, so stale caches are not reused.
RECIPE=3
TARBALL="$CACHE_DIR/base-$SUITE-r$RECIPE.tar"
# python3-venv brings ensurepip (pip and setuptools wheels), so `python3 -m venv` yields a working pip
# without Debian's python3-pip, whose system pip refuses to install (PEP 668).
PACKAGES="python3,python3-venv"

FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

log() { echo "[base-image] $*" >&2; }

if [[ $FORCE == 0 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already exists; nothing to do"
    exit 0
fi

import_tarball() {
    log "importing $TARBALL as $IMAGE"
    docker import \
        --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        --message "debootstrap --variant=minbase $SUITE + $PACKAGES (gradserve deploy/base-image.sh r$RECIPE)" \
        "$TARBALL" "$IMAGE" >/dev/null
    log "done: $(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"
}

if [[ $FORCE == 0 && -s "$TARBALL" ]]; then
    import_tarball
    exit 0
fi

if [[ $EUID -ne 0 ]]; then
    log "debootstrap needs root; run as root (or import an existing $TARBALL)"
    exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# Use the mirror this host's apt already uses: it is the one the network here lets through.
detect_mirror() {
    local uri
    uri=$(grep -hs -E '^\s*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
    if [[ -z "$uri" ]]; then
        uri=$(grep -hs -E '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
              | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
              | grep -E '/debian/?$' | head -n1 || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${DEBIAN_MIRROR:-$(detect_mirror)}"

mkdir -p "$CACHE_DIR"
ROOTFS="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
cleanup() {
    # debootstrap may leave /proc or /sys mounted inside the target when it fails half-way.
    for m in proc sys dev/pts dev; do
        mountpoint -q "$ROOTFS/$m" 2>/dev/null && umount -l "$ROOTFS/$m" || true
    done
    rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT

log "debootstrap --variant=minbase $SUITE from $MIRROR (a few minutes)"
start=$SECONDS
keyring=()
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
debootstrap --variant=minbase --include="$PACKAGES" "${keyring[@]}" "$SUITE" "$ROOTFS" "$MIRROR" \
    > "$CACHE_DIR/debootstrap.log" 2>&1 || {
        log "debootstrap failed; last lines of $CACHE_DIR/debootstrap.log:"
        tail -n 30 "$CACHE_DIR/debootstrap.log" >&2
        exit 1
    }
log "debootstrap took $((SECONDS - start)) s"

# Point apt at the same mirror (plus security updates) so images built on top can still apt-get.
cat > "$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian*}/debian-security $SUITE-security main
EOF

# Keep the image small: package caches, docs, man pages and locales serve no purpose in a container.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/cache/apt/*.bin \
       "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/* "$ROOTFS"/tmp/* \
       "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
       "$ROOTFS"/usr/share/locale/* "$ROOTFS"/usr/share/lintian "$ROOTFS"/usr/share/linda
find "$ROOTFS/usr/lib/python3" "$ROOTFS/usr/lib/python3.11" -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
# Same dpkg excludes as Debian's official slim images, so later apt-get installs stay small too.
cat > "$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
echo 'APT::Install-Recommends "false";' > "$ROOTFS/etc/apt/apt.conf.d/99no-recommends"
# A chroot's resolv.conf/hostname come from the build host; Docker provides its own at run time.
: > "$ROOTFS/etc/resolv.conf"
: > "$ROOTFS/etc/hostname"

# Sanity check before caching: the interpreter runs and venv can bootstrap pip.
chroot "$ROOTFS" /usr/bin/python3 -c 'import ensurepip, venv, sys; assert sys.version_info[:2] == (3, 11), sys.version'

tar --numeric-owner --xattrs -C "$ROOTFS" -cf "$TARBALL.tmp" .
mv "$TARBALL.tmp" "$TARBALL"
import_tarball
