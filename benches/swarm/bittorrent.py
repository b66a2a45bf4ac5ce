"""The `bittorrent` method of the swarm benchmark: the classic P2P answer.

Owns the BitTorrent baseline only: the torrent of the image, the tracker
(Debian's opentracker, in the scheduler's namespace, unshaped like the
scheduler), the seeder (aria2c in the origin's namespace, so its upload
is the origin's egress on the origin's shaped link) and one leecher per
node (aria2c, which keeps seeding until every node is done). The harness
(`swarm.py`, passed in as `sw`) owns the topology, the common start
instant, the counters and the digest check.

One multi-file torrent holds every file a pull needs (the origin's
manifest, the config and the layers, each named by its sha256 hex in a
directory `sha256`), so each leecher writes `out-K/blobs/sha256/<hex>`,
the layout the harness verifies. One torrent rather than one per layer:
one swarm, one announce per peer, one set of peer connections, and
rarest-first across all the image's pieces, as shoal schedules pieces
across the whole image; one torrent per layer would multiply tracker
announces and connections and leave the layer order to aria2's queue.
"""

import os
import re
import shutil
import subprocess
import time

TRACKER_PORT = 6969
PEER_PORT = 6881
# mktorrent's default: 2^18 = 256 KiB pieces (2048 pieces for 512 MiB).
PIECE_LOG2 = 18

# Completion: aria2 runs this when the download is complete and verified,
# before it goes on seeding. BT_START/BT_RES come from the wrapper below.
HOOK = '''#!/bin/sh
e=$(date +%s.%N)
echo "$BT_START $e 0" > "$BT_RES.tmp" && mv "$BT_RES.tmp" "$BT_RES"
'''

# Waits for the common start file, notes the start, then becomes aria2c
# (exec: the spawned PID is the leecher's, for its CPU seconds).
WRAPPER = r'''
go="$1"; shift
i=0
while [ ! -e "$go" ] && [ $i -lt 12000 ]; do sleep 0.005; i=$((i+1)); done
BT_START=$(date +%s.%N)
export BT_START
exec aria2c "$@"
'''


def missing_tools():
    """The Debian packages this method needs and lacks: [(tool, package)]."""
    need = [("opentracker", "opentracker"), ("mktorrent", "mktorrent"), ("aria2c", "aria2")]
    return [(t, pkg) for t, pkg in need if shutil.which(t) is None]


def aria2_common(sw, args, n):
    """Settings every aria2c shares: tracker only (no DHT, no local peer
    discovery), peer exchange on, room for every peer, no upload cap, no
    preallocation, a re-announce every second so peers find each other
    fast, and seeding that never stops on its own (the harness stops it)."""
    rate_bytes = int(sw.parse_rate(args.rate) / 8)
    return [
        "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
        "--enable-peer-exchange=true",
        f"--bt-max-peers={n + 1}",
        # aria2 asks the tracker for more peers while its speed is below this;
        # the link rate keeps it looking until the link is full.
        f"--bt-request-peer-speed-limit={rate_bytes}",
        "--max-upload-limit=0", "--max-overall-upload-limit=0",
        "--max-download-limit=0", "--max-overall-download-limit=0",
        "--file-allocation=none",
        "--bt-tracker-interval=1", "--bt-tracker-connect-timeout=5", "--bt-tracker-timeout=10",
        "--seed-ratio=0.0",
        f"--listen-port={PEER_PORT}",
        "--disable-ipv6=true", "--auto-file-renaming=false", "--allow-overwrite=true",
        "--summary-interval=0", "--console-log-level=warn", "--log-level=notice",
    ]


def info_hash(sw, torrent):
    out = sw.run(["aria2c", "-S", torrent]).stdout
    m = re.search(r"^Info Hash: ([0-9a-f]{40})$", out, re.M)
    if not m:
        raise RuntimeError(f"aria2c -S printed no info hash for the torrent: {out[:300]}")
    return m.group(1)


def seeds_at_tracker(sw, topo, ih):
    """How many complete peers (seeds) the tracker lists for `ih` (None: no answer)."""
    q = "".join(f"%{b:02x}" for b in bytes.fromhex(ih))
    url = f"http://{sw.SCHED_IP}:{TRACKER_PORT}/scrape?info_hash={q}"
    # bencoded, with the binary hash in it: bytes, not text
    r = subprocess.run(sw.nsx(topo.sched, "curl", "-s", "-f", "-g", "-m", "2", url), capture_output=True,
                       timeout=10)
    if r.returncode != 0:
        return None
    m = re.search(rb"8:completei(\d+)e", r.stdout)
    return int(m.group(1)) if m else 0


def wait_seeds(sw, topo, ih, want, what, timeout=60):
    for _ in range(int(timeout / 0.2) + 1):
        got = seeds_at_tracker(sw, topo, ih)
        if got is not None and got >= want:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what}: the tracker did not list {want} seed(s) within {timeout}s "
                       f"(see opentracker.log and seeder.log)")


def seed_files(sw, topo, image, seed):
    """The origin's manifest and blobs, fetched over the origin's own
    loopback (not counted as egress), each checked against its digest."""
    os.makedirs(seed, exist_ok=True)
    base = f"http://{sw.ORIGIN_IP}:5000/v2/{sw.REPO}"
    want = [(image["manifest_digest"], f"{base}/manifests/{sw.TAG}")]
    want += [(b["digest"], f"{base}/blobs/{b['digest']}") for b in image["blobs"]]
    for digest, url in want:
        path = os.path.join(seed, digest.split(":", 1)[1])
        sw.run(sw.nsx(topo.origin, "curl", "-sf", "-H", f"Accept: {sw.MANIFEST_ACCEPT}", "-o", path, url),
               timeout=600)
        if sw.sha256_file(path) != digest:
            raise RuntimeError(f"origin served {digest[:19]} with other bytes")


def method_bittorrent(sw, args, topo, st, work, image):
    name = "bittorrent"
    n = len(topo.nodes)
    mdir = os.path.join(work, name)
    os.makedirs(mdir, exist_ok=True)
    seed_root = os.path.join(mdir, "seed")
    seed_files(sw, topo, image, os.path.join(seed_root, "sha256"))
    torrent = os.path.join(mdir, "image.torrent")
    sw.run(["mktorrent", "-d", "-l", str(PIECE_LOG2), "-n", "sha256", "-o", torrent,
            "-a", f"http://{sw.SCHED_IP}:{TRACKER_PORT}/announce", os.path.join(seed_root, "sha256")], timeout=600)
    ih = info_hash(sw, torrent)
    # Debian builds opentracker with a whitelist: it answers only for listed
    # hashes. It chroots into `trk` and drops to nobody, so the list is
    # read there, world-readable.
    trk = os.path.join(mdir, "tracker")
    os.makedirs(trk, exist_ok=True)
    os.chmod(trk, 0o755)
    with open(os.path.join(trk, "whitelist.txt"), "w") as f:
        f.write(ih + "\n")
    os.chmod(os.path.join(trk, "whitelist.txt"), 0o644)
    hook = os.path.join(mdir, "hook.sh")
    with open(hook, "w") as f:
        f.write(HOOK)
    os.chmod(hook, 0o755)
    wrapper = os.path.join(mdir, "leech.sh")
    with open(wrapper, "w") as f:
        f.write(WRAPPER)
    common = aria2_common(sw, args, n)
    tracker = seeder = None
    leechers = []
    m = {}
    try:
        tracker = sw.spawn(st, topo.sched, ["opentracker", "-i", sw.SCHED_IP, "-p", str(TRACKER_PORT),
                                            "-P", str(TRACKER_PORT), "-d", trk, "-w", "whitelist.txt",
                                            "-u", "nobody"], os.path.join(mdir, "opentracker.log"))
        for _ in range(300):
            if seeds_at_tracker(sw, topo, ih) is not None or tracker.poll() is not None:
                break
            time.sleep(0.2)
        if seeds_at_tracker(sw, topo, ih) is None:
            raise RuntimeError("opentracker did not answer a scrape within 60s (see opentracker.log)")
        # --bt-seed-unverified: seed the files as they are (they were just
        # checked against their digests) without hashing them first. Not
        # --bt-hash-check-seed=false: with it aria2 1.36 reports the
        # complete files as done and exits instead of seeding.
        seeder = sw.spawn(st, topo.origin, ["aria2c", *common, "--bt-seed-unverified=true",
                                            "--check-integrity=false", f"--dir={seed_root}",
                                            f"--log={os.path.join(mdir, 'seeder-aria2.log')}", torrent],
                          os.path.join(mdir, "seeder.log"))
        wait_seeds(sw, topo, ih, 1, "seeder")
        sw.log(f"{name}: tracker and seeder up, info hash {ih}")

        def launch(i, ns, go, out, res):
            os.makedirs(os.path.join(out, "blobs"), exist_ok=True)
            env = dict(os.environ, BT_RES=res)
            # Leechers: no integrity pass (aria2 checks every piece's SHA-1
            # as it arrives); the hook marks completion; seed until stopped.
            p = sw.spawn(st, ns, ["bash", wrapper, go, *common, "--check-integrity=false",
                                  f"--on-bt-download-complete={hook}", f"--dir={os.path.join(out, 'blobs')}",
                                  f"--log={os.path.join(mdir, f'leecher-{i}-aria2.log')}", torrent],
                         os.path.join(mdir, f"leecher-{i}.log"), env=env)
            leechers.append(p)
            return p

        mdir, nodes, m = sw.pull_all(args, topo, st, work, name, launch=launch)
        # Before anything stops: the leechers' CPU over their life less what
        # their wrappers spent waiting for the start (same PID after exec).
        m["daemon_cpu_s"] = [round(max(0.0, sw.cpu_seconds(p.pid) - w), 2)
                             for p, w in zip(m["procs"], m["wait_cpu_s"])]
        m["daemon_cpu_total_s"] = round(sum(m["daemon_cpu_s"]), 2)
        m["daemon_cpu_what"] = f"{n} aria2c leechers (seeding after they finish)"
        m["seeder_cpu_s"] = round(sw.cpu_seconds(seeder.pid), 2)
        m["tracker_cpu_s"] = round(sw.cpu_seconds(tracker.pid), 2)
        m["torrent"] = {"info_hash": ih, "piece_bytes": 1 << PIECE_LOG2, "files": len(image["blobs"]) + 1,
                        "aria2_common": common}
        sw.log(f"{name}: leechers used {m['daemon_cpu_total_s']:.1f} CPU seconds, seeder {m['seeder_cpu_s']:.1f}, "
               f"tracker {m['tracker_cpu_s']:.2f}")
        return mdir, nodes, m
    finally:
        m.pop("procs", None)
        sw.stop_pids([p.pid for p in leechers] + [x.pid for x in (seeder, tracker) if x],
                     grace=args.stop_grace)
        m.pop("wait_cpu_s", None)
        sw.run(["rm", "-rf", "--one-file-system", seed_root])
