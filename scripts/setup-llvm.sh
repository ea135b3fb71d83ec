#!/usr/bin/env bash
# Installs what the `llvm` feature builds against: LLVM 22 from Debian's
# packages (static libraries, linked into saturn by inkwell/llvm-sys) and
# the libraries LLVM links with. Idempotent: does nothing when everything
# is there. `.cargo/config.toml` points llvm-sys at /usr/lib/llvm-22.
#
#   scripts/setup-llvm.sh          (as root, or with sudo available)
set -euo pipefail

packages=(llvm-22-dev libpolly-22-dev zlib1g-dev libzstd-dev libxml2-dev libffi-dev g++)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ] && [ -x /usr/lib/llvm-22/bin/llvm-config ]; then
    echo "LLVM 22: $(/usr/lib/llvm-22/bin/llvm-config --version) at /usr/lib/llvm-22 (nothing to install)"
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        sudo=(sudo)
    else
        echo "error: installing ${missing[*]} needs root (or sudo)" >&2
        exit 1
    fi
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "LLVM 22: $(/usr/lib/llvm-22/bin/llvm-config --version) at /usr/lib/llvm-22"
