#!/usr/bin/env bash
# Installs what building pgshroud needs beyond Rust and a C compiler: pg_query (PostgreSQL's own
# scanner and grammar, which pgshroud reads SQL with) compiles libpg_query with bindgen, which
# needs libclang, and generates its protobuf bindings with protoc. Idempotent: when both are
# present it changes nothing. Run by scripts/demo.sh and scripts/install-test-deps.sh. Needs
# root or sudo for apt-get; without apt-get it says what to install.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

say() { printf 'install-build-deps: %s\n' "$*" >&2; }

has_libclang() {
    ldconfig -p 2>/dev/null | grep -q 'libclang' ||
        compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null ||
        [ -n "${LIBCLANG_PATH:-}" ]
}

missing=()
has_libclang || missing+=(libclang-dev)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${missing[*]} and no apt-get: install libclang and protoc yourself"
    say "(Fedora: dnf install clang-devel protobuf-compiler; macOS: brew install llvm protobuf)"
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        say "installing needs root: run as root, or: apt-get install ${missing[*]}"
        exit 1
    fi
    sudo=(sudo)
fi
say "apt-get install ${missing[*]} (pg_query builds PostgreSQL's parser with them)"
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
