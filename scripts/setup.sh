#!/usr/bin/env bash
# Install what twinbox needs on a Debian/Ubuntu machine, build it, and build the guest
# kernel (idempotent; the kernel is cached by content hash under /var/cache/twinbox).
# Usage: sudo scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

# busybox-static: the built-in image; e2fsprogs: VM disks; util-linux: `script` for the
# terminal tests; iproute2 + nftables: networks (bridges, NAT, published ports);
# docker-registry + apache2-utils (htpasswd): the registry tests; debootstrap: the Debian
# image test; podman: the interoperability test; zstd: a zstd layer for the tests;
# qemu-system-x86 + kmod: the lab; libseccomp-dev: the seccomp filters (linked statically)
# and, with libcap-ng-dev, virtiofsd (the virtio-fs back end of microVM volumes);
# gcc + libc6-dev also build the escape suite's hostile helpers; the rest builds twinbox
# and the kernel.
want=(busybox-static util-linux e2fsprogs iproute2 nftables docker-registry apache2-utils debootstrap podman zstd
      gcc libc6-dev libseccomp-dev libcap-ng-dev ca-certificates curl
      qemu-system-x86 kmod xz-utils make bc bison flex libelf-dev linux-source-6.1)
missing=()
for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    extra=()
    # Some machines carry qemu-utils 10.x from bookworm-backports, which Breaks bookworm's
    # qemu-system-common 7.2 (apt would silently remove qemu-img): take bookworm's too.
    v=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    if [[ -n $v ]] && dpkg --compare-versions "$v" ge 1:8 && [[ " ${missing[*]} " == *" qemu-system-x86 "* ]]; then
        extra=(--allow-downgrades qemu-utils/bookworm)
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" "${extra[@]}" >/dev/null
    # docker-registry's package starts a registry service on :5000; the tests start
    # their own, inside their own network namespaces.
    if [[ " ${missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null \
        && systemctl is-system-running >/dev/null 2>&1; then
        systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "setup: installing Rust with rustup"
        curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
fi

# `--userns remap` maps a container's root to the subordinate ids of the user `twinbox`
# (Docker's userns-remap uses `dockremap` the same way).
if ! id twinbox >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin twinbox
fi
if ! grep -q '^twinbox:' /etc/subuid 2>/dev/null || ! grep -q '^twinbox:' /etc/subgid 2>/dev/null; then
    # The first 65,536 ids above every range already given (ordinary users get
    # 100000 + 65536*k), so no one else's user namespace holds these ids.
    top=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: '$3 { e = $2 + $3; if (e > m) m = e } END { print m + 0 }')
    start=$(( top > 200000 ? (top + 65535) / 65536 * 65536 : 200000 ))
    usermod --add-subuids "$start-$((start + 65535))" --add-subgids "$start-$((start + 65535))" twinbox
fi

echo "setup: building twinbox (release)"
cargo build --release --quiet
echo "setup: virtiofsd"
scripts/virtiofsd.sh >/dev/null
echo "setup: guest kernel"
kernel-config/build.sh >/dev/null
echo "setup: done: target/x86_64-unknown-linux-gnu/release/twinbox"
