#!/usr/bin/env python3
"""What the fetches of a swarm run were waiting on, second by second.

Reads the daemon logs a run kept (target/bench/swarm-N-logs/shoal/) and
prints, per second since the first fetch, summed over every node's
fetches: requests in flight, missing pieces, pieces some parent offered,
pieces parents held but withheld (handed to another child just now, or at
a parent cooling down), free request slots, and how many fetches were
*starved* (free slots, nothing offered: waiting on the swarm, not on a
link). The lines come from the daemons' debug log, so run the bench with

    benches/swarm/run.sh --nodes 8 --methods shoal \\
        --rust-log info,shoal_peer::swarm::fetch=debug
    python3 benches/swarm/outlook.py target/bench/swarm-8-logs/shoal

With the run's metrics files present it also prints each node's QUIC
packets sent and lost on its uploads, and their mean round trip.
"""

import argparse
import collections
import datetime
import glob
import os
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")
FIELD = re.compile(r"(\w+)=(\S+)")
FIELDS = ("inflight", "missing", "offered", "withheld", "free_slots")


def outlook_lines(path):
    """(time, {field: int}) of each `fetch outlook` line in one log."""
    with open(path, errors="replace") as f:
        for line in f:
            if "fetch outlook" not in line:
                continue
            line = ANSI.sub("", line)
            m = STAMP.match(line)
            if not m:
                continue
            t = datetime.datetime.fromisoformat(m.group(1)).timestamp()
            fields = dict(FIELD.findall(line))
            try:
                yield t, {k: int(fields[k]) for k in FIELDS}
            except (KeyError, ValueError):
                continue


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def print_outlook(rows):
    t0 = min(t for t, _ in rows)
    per_second = collections.defaultdict(list)
    for t, f in rows:
        per_second[int(t - t0)].append(f)
    print("   s | fetches | inflight | missing | offered | withheld | free slots | starved")
    for s in sorted(per_second):
        fs = per_second[s]
        total = {k: sum(f[k] for f in fs) for k in FIELDS}
        starved = sum(1 for f in fs if f["free_slots"] > 0 and f["offered"] == 0 and f["missing"] > 0)
        print(f"{s:4d} | {len(fs):7d} | {total['inflight']:8d} | {total['missing']:7d} | {total['offered']:7d} | "
              f"{total['withheld']:8d} | {total['free_slots']:10d} | {starved:7d}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", help="a run's log folder, e.g. target/bench/swarm-8-logs/shoal")
    args = ap.parse_args()
    logs = sorted(glob.glob(os.path.join(args.logs, "daemon-*.log")))
    if not logs:
        print(f"{args.logs}: no daemon-*.log here", file=sys.stderr)
        return 2
    rows = [row for path in logs for row in outlook_lines(path)]
    metrics = sorted(glob.glob(os.path.join(args.logs, "metrics-[0-9]*.txt")),
                     key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0))
    if not rows:
        print(f"{args.logs}: no 'fetch outlook' lines; run the bench with "
              f"--rust-log info,shoal_peer::swarm::fetch=debug", file=sys.stderr)
        if not metrics:
            return 2
    else:
        print_outlook(rows)
    if metrics:
        print()
        print("node | QUIC packets sent | lost | lost % | congestion events | mean RTT ms")
        for path in metrics:
            text = open(path, errors="replace").read()
            sent = metric(text, "shoal_peer_quic_sent_packets_total")
            lost = metric(text, "shoal_peer_quic_lost_packets_total")
            events = metric(text, "shoal_peer_quic_congestion_events_total")
            rtt_sum = metric(text, "shoal_peer_quic_rtt_seconds_sum")
            rtt_n = metric(text, "shoal_peer_quic_rtt_seconds_count")
            node = os.path.basename(path)[len("metrics-"):-len(".txt")]
            print(f"{node:>4} | {sent:17.0f} | {lost:4.0f} | {100 * lost / max(sent, 1):6.2f} | {events:17.0f} | "
                  f"{1000 * rtt_sum / max(rtt_n, 1):11.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
