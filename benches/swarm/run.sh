#!/usr/bin/env bash
# Swarm benchmark (issue 4). Needs root. One command:
#   sudo benches/swarm/run.sh [--nodes 8] [--rate 100mbit] [--origin-rate 100mbit] \
#        [--size-mib 256] [--layers 2] [--methods shoal,direct,cache,bittorrent] [--burst 256kb] \
#        [--shoal PATH]
# Writes target/bench/swarm-N.json and .md, prints the markdown table.
# Everything it creates (namespaces shb-*, processes, the temp dir) is removed
# at the end and on failure or interruption.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [ "$(id -u)" != 0 ]; then echo "run.sh: needs root (ip netns, tc)" >&2; exit 2; fi
for t in ip tc docker-registry skopeo umoci curl python3; do
  command -v "$t" >/dev/null || { echo "run.sh: missing $t" >&2; exit 2; }
done
# Builds the release binary only when a shoal method runs and no --shoal
# PATH names another binary.
methods="shoal,direct,cache"; shoal_bin=""
prev=""
for a in "$@"; do
  case "$prev" in --methods) methods="$a" ;; --shoal) shoal_bin="$a" ;; esac
  case "$a" in --methods=*) methods="${a#--methods=}" ;; --shoal=*) shoal_bin="${a#--shoal=}" ;; esac
  prev="$a"
done
case ",$methods" in
  *,shoal*)
    if [ -n "$shoal_bin" ]; then
      [ -x "$shoal_bin" ] || { echo "run.sh: --shoal $shoal_bin is not an executable" >&2; exit 2; }
    elif [ ! -x "$root/target/release/shoal" ]; then
      (cd "$root" && cargo build --release -p shoal)
    fi ;;
esac
work="$(mktemp -d /tmp/shoal-swarm.XXXXXX)"
cleanup() {
  rc=$?
  trap - EXIT INT TERM HUP
  timeout 120 python3 "$here/swarm.py" teardown --workdir "$work" || true
  rm -rf --one-file-system "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
# python runs in the foreground and receives the signals too; its own
# finally-block tears down first, the trap above is the backstop.
python3 "$here/swarm.py" bench --workdir "$work" "$@"
