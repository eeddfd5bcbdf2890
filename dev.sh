#!/usr/bin/env bash
# uvs developer entry point. Installs what it needs (Debian packages; crates via cargo).
#   sudo ./dev.sh lab     build and run the lab (the main job) on its default topology
#   sudo ./dev.sh test    run the whole test suite (unit + namespace end-to-end tests)
set -euo pipefail
cd "$(dirname "$0")"

# What dev.sh is doing, on stderr (cargo's own progress follows it).
say() { echo "dev.sh: $*" >&2; }

# A first build compiles every dependency (several minutes on 2 cores); later builds
# recompile uvs and what changed. Cargo prints each crate it compiles, and a progress
# bar on a terminal.
build_note() {
    if [ -d target/release/deps ]; then
        say "$1: recompiling what changed (a change to uvs: about 1.5 minutes of CPU; 5 on a busy 2-core VM)"
    else
        say "$1: first build, every dependency too (5-10 minutes on 2 cores)"
    fi
}

deps() {
    local need=()
    command -v ip >/dev/null 2>&1 || need+=(iproute2)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v tcpdump >/dev/null 2>&1 || need+=(tcpdump)
    # uvs drops the kernel's copy of VIP traffic with an nftables rule (see README).
    command -v nft >/dev/null 2>&1 || need+=(nftables)
    # keepalived -t is the oracle of tests/keepalived.rs (keepalived.conf parsing).
    command -v keepalived >/dev/null 2>&1 || need+=(keepalived)
    # openssl s_server is the TLS server of the SSL_GET tests (src/check, tests/keepalived_checks.rs).
    command -v openssl >/dev/null 2>&1 || need+=(openssl)
    # tests/failover.rs pings the VIP (uvs answers ICMP echo for the VIPs it holds).
    command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
    if [ ${#need[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "dev.sh: missing ${need[*]}; run as root (sudo) so they can be installed" >&2
            exit 1
        fi
        say "installing ${need[*]} (apt-get)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
}

case "${1:-}" in
    lab)
        shift
        deps
        build_note "building uvs (cargo build --release)"
        cargo build --release
        say "starting the lab: ./target/release/uvs lab $*"
        exec ./target/release/uvs lab "$@"
        ;;
    test)
        shift
        deps
        if [ "$(id -u)" -ne 0 ]; then
            echo "dev.sh: WARNING: not root: the namespace end-to-end tests will be SKIPPED" >&2
        fi
        build_note "building the tests (cargo test --release), then running them"
        cargo test --release "$@"
        ;;
    *)
        echo "usage: sudo ./dev.sh lab [uvs lab options] | sudo ./dev.sh test [cargo test options]" >&2
        exit 2
        ;;
esac
