#!/usr/bin/env bash
# Install virtiofsd (the virtio-fs vhost-user back end microVM volumes use; the Rust daemon
# of the virtio-fs project, as Kata and QEMU run it) from the crates registry, cached by
# version under ${TWINBOX_CACHE:-/var/cache/twinbox}/virtiofsd/<version>, and link it to
# /usr/local/libexec/twinbox/virtiofsd, where twinbox looks for it. Prints that path.
set -euo pipefail
VERSION=1.14.0
CACHE=${TWINBOX_CACHE:-/var/cache/twinbox}
root=$CACHE/virtiofsd/$VERSION
link=/usr/local/libexec/twinbox/virtiofsd
if [[ ! -x $root/bin/virtiofsd ]]; then
    echo "virtiofsd: cargo install virtiofsd $VERSION (a few minutes, once)" >&2
    rm -rf "$root.tmp"
    cargo install --quiet --locked --version "$VERSION" --root "$root.tmp" virtiofsd >&2
    rm -rf "$root"
    mv "$root.tmp" "$root"
fi
mkdir -p "$(dirname "$link")"
ln -sfn "$root/bin/virtiofsd" "$link"
echo "$link"
