#!/usr/bin/env bash
# Regenerate pictures/lab-nat.png, the README's screenshot of `uvs lab --html` for one
# mode: runs the lab (root), then Debian's chromium headless in an empty network
# namespace of its own (nothing to fetch from), 1280 px wide.
#   sudo pictures/lab-screenshot.sh [MODE] [HEIGHT]
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-nat}"
height="${2:-1700}"
command -v chromium >/dev/null || { echo "needs chromium: apt-get install chromium" >&2; exit 1; }
cargo build --release --quiet
work="$(mktemp -d)"
ns="uvs-shot-$$"
trap 'ip netns del "$ns" 2>/dev/null || true; rm -rf "$work"' EXIT
NO_COLOR=1 ./target/release/uvs lab --mode "$mode" --html "$work/lab.html" >/dev/null
ip netns add "$ns"
ip netns exec "$ns" chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" --hide-scrollbars --window-size="1280,$height" \
    --screenshot="$PWD/pictures/lab-$mode.png" "file://$work/lab.html" 2>/dev/null
echo "wrote pictures/lab-$mode.png"
