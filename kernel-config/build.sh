#!/usr/bin/env bash
# Build twinbox's guest kernel (vmlinux) from Debian's linux-source-6.1 and
# kernel-config/guest.fragment, reproducibly, cached by content hash.
#
#   kernel-config/build.sh            # prints the path of the cached vmlinux
#
# Cache: ${TWINBOX_CACHE:-/var/cache/twinbox}/kernel/<key>/vmlinux, where key hashes the
# fragment, this script and the linux-source package version; `current` points at the
# newest build. A cached kernel is reused; a changed fragment or source builds a new one.
set -euo pipefail
export LC_ALL=C DEBIAN_FRONTEND=noninteractive
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${TWINBOX_CACHE:-/var/cache/twinbox}
FRAGMENT=$HERE/guest.fragment
JOBS=${JOBS:-$(nproc)}

say() { printf 'kernel: %s\n' "$*" >&2; }

pkgs=()
for p in linux-source-6.1 bc bison flex libelf-dev make gcc xz-utils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$p")
done
if ((${#pkgs[@]})); then
    say "installing ${pkgs[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1)
tarball=$(ls /usr/src/linux-source-6.1.tar.* | head -n1)
key=$( (cat "$FRAGMENT" "$HERE/build.sh"; echo "$srcver") | sha256sum | cut -c1-16)
out=$CACHE/kernel/$key
if [[ -s $out/vmlinux ]]; then
    ln -sfn "$key" "$CACHE/kernel/current"
    say "cached ($out)"
    echo "$out/vmlinux"
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/twinbox-kernel.XXXXXX")
trap 'rm -rf "$work"' EXIT
say "extracting linux-source-6.1 $srcver"
tar -xf "$tarball" -C "$work"
src=$(echo "$work"/linux-source-6.1)
cd "$src"
say "tinyconfig + guest.fragment + olddefconfig"
make -s tinyconfig >/dev/null
scripts/kconfig/merge_config.sh -m .config "$FRAGMENT" >/dev/null
make -s olddefconfig >/dev/null
missing=0
while IFS= read -r line; do
    case "$line" in
        CONFIG_*=*) grep -qx "$line" .config || { say "fragment line not in .config: $line"; missing=1; } ;;
        "# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *}
            if grep -q "^$opt=" .config; then say "should be off: $opt"; missing=1; fi ;;
    esac
done < "$FRAGMENT"
((missing == 0)) || { say "the fragment did not apply cleanly"; exit 1; }

say "make -j$JOBS vmlinux (a few minutes)"
start=$SECONDS
n=0
make -j"$JOBS" vmlinux 2>&1 | while IFS= read -r l; do
    case "$l" in
        *" CC "*|*" AS "*|*" LD "*|*" AR "*)
            n=$((n + 1))
            if ((n % 50 == 0)); then printf '\rkernel: %d objects built, %ds' "$n" $((SECONDS - start)) >&2; fi ;;
        *error*|*Error*) printf '\n%s\n' "$l" >&2 ;;
    esac
done
printf '\n' >&2
[[ -s vmlinux ]] || { say "build failed"; exit 1; }
mkdir -p "$out.tmp"
cp vmlinux "$out.tmp/vmlinux"
cp .config "$out.tmp/config"
make -s kernelrelease > "$out.tmp/release"
rm -rf "$out"
mv "$out.tmp" "$out"
ln -sfn "$key" "$CACHE/kernel/current"
say "built in $((SECONDS - start)) s: $out/vmlinux ($(cat "$out/release"))"
echo "$out/vmlinux"
