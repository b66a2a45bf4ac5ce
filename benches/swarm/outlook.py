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

With `shoal_peer::task::sink=debug` as well it prints how fast pieces
spread: for every piece a node got from the origin, how long after that
node stored it the first, the median and the last other node stored it,
averaged over the pieces the origin delivered in each 2-second window:

    benches/swarm/run.sh --nodes 8 --methods shoal \
        --rust-log info,shoal_peer::swarm::fetch=debug,shoal_peer::task::sink=debug

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


def log_lines(path, message):
    """(time, {field: text}) of each line of one log that carries `message`."""
    with open(path, errors="replace") as f:
        for line in f:
            if message not in line:
                continue
            line = ANSI.sub("", line)
            m = STAMP.match(line)
            if m:
                yield datetime.datetime.fromisoformat(m.group(1)).timestamp(), dict(FIELD.findall(line))


def outlook_lines(path):
    """(time, {field: int}) of each `fetch outlook` line in one log."""
    for t, fields in log_lines(path, "fetch outlook"):
        try:
            yield t, {k: int(fields[k]) for k in FIELDS}
        except (KeyError, ValueError):
            continue


def stored_lines(path):
    """(time, digest, piece, from) of each `piece stored` line in one log."""
    for t, fields in log_lines(path, "piece stored"):
        try:
            yield t, fields["digest"], int(fields["piece"]), fields.get("from", "").strip('"')
        except (KeyError, ValueError):
            continue


def spread(stored):
    """Per piece the origin delivered: (when, [delays of the other nodes]).
    `stored` maps node -> its `stored_lines`. Pieces no other node got are
    left out."""
    at = collections.defaultdict(dict)  # (digest, piece) -> node -> (t, from)
    for node, lines in stored.items():
        for t, digest, piece, src in lines:
            at[(digest, piece)].setdefault(node, (t, src))
    out = []
    for nodes in at.values():
        firsts = [(t, n) for n, (t, src) in nodes.items() if src == "origin"]
        if not firsts:
            continue
        t0, seed = min(firsts)
        delays = sorted(t - t0 for n, (t, _) in nodes.items() if n != seed)
        if delays:
            out.append((t0, delays))
    return sorted(out)


def print_spread(pieces, window=2):
    t0 = pieces[0][0]
    buckets = collections.defaultdict(list)
    for t, delays in pieces:
        buckets[int((t - t0) // window)].append(delays)
    print("origin piece stored at s | pieces | first other node s | median node s | last node s (mean / max)")
    for b in sorted(buckets):
        ds = buckets[b]
        first = sum(d[0] for d in ds) / len(ds)
        median = sum(d[len(d) // 2] for d in ds) / len(ds)
        last = [d[-1] for d in ds]
        print(f"{b * window:9d}-{(b + 1) * window:<14d} | {len(ds):6d} | {first:18.2f} | {median:13.2f} | "
              f"{sum(last) / len(last):6.2f} / {max(last):.2f}")


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
    pieces = spread({os.path.basename(p): list(stored_lines(p)) for p in logs})
    if not rows:
        print(f"{args.logs}: no 'fetch outlook' lines; run the bench with "
              f"--rust-log info,shoal_peer::swarm::fetch=debug", file=sys.stderr)
        if not metrics and not pieces:
            return 2
    else:
        print_outlook(rows)
    if pieces:
        print()
        print_spread(pieces)
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
