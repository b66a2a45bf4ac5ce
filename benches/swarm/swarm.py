#!/usr/bin/env python3
"""Swarm benchmark (issue 4): N shaped hosts pull one image at once.

Run it through `benches/swarm/run.sh` (root). Python 3 standard library only.

Topology, all in network namespaces this script creates (nothing else is
touched; addresses exist only inside them):

    <p>-br      a bridge (br0) in its own namespace; one port per host
    <p>-origin  10.77.0.1  docker-registry (the origin), shaped; the
                           BitTorrent seeder (bittorrent.py)
    <p>-sched   10.77.0.2  shoal scheduler or the BitTorrent tracker
                           (unshaped: control traffic only)
    <p>-cache   10.77.0.3  docker-registry with proxy.remoteurl, shaped
    <p>-nK      10.77.0.(10+K)  node K: shoal daemon + the pulling client,
                                or an aria2c leecher

Shaping: tbf on the host end of each veth (the host's upload) and on the
bridge end (the host's download). Origin egress is the origin veth's
tx_bytes (link level: Ethernet/IP/TCP headers included).
"""

import argparse
import functools
import gzip
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time

import bittorrent

SUBNET = "10.77.0"
ORIGIN_IP = f"{SUBNET}.1"
SCHED_IP = f"{SUBNET}.2"
CACHE_IP = f"{SUBNET}.3"
REPO = "bench/image"
TAG = "v1"
MANIFEST_ACCEPT = ",".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def node_ip(i):
    return f"{SUBNET}.{10 + i}"


def log(*a):
    print(f"[swarm {time.strftime('%H:%M:%S')}]", *a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# state: every namespace and pid we create, on disk so a trap can undo it
# --------------------------------------------------------------------------
class State:
    def __init__(self, workdir):
        self.path = os.path.join(workdir, "state.json")
        self.namespaces = []
        self.pids = []
        self.mounts = []
        if os.path.exists(self.path):
            with open(self.path) as f:
                d = json.load(f)
            self.namespaces = d.get("namespaces", [])
            self.pids = d.get("pids", [])
            self.mounts = d.get("mounts", [])

    def save(self):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"namespaces": self.namespaces, "pids": self.pids, "mounts": self.mounts}, f)
        os.replace(tmp, self.path)

    def add_mount(self, path):
        self.mounts.append(path)
        self.save()

    def add_ns(self, ns):
        self.namespaces.append(ns)
        self.save()

    def add_pid(self, pid):
        self.pids.append(pid)
        self.save()


def run(cmd, timeout=120, check=True, capture=True, input=None):
    r = subprocess.run(cmd, timeout=timeout, capture_output=capture, text=True, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r


def nsx(ns, *args):
    return ["ip", "netns", "exec", ns, *args]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def stop_pids(pids, grace=10.0):
    """SIGTERM each pid, wait (bounded), SIGKILL the rest. Only pids given."""
    pids = [p for p in pids if p and p != os.getpid()]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace
    for _ in range(int(grace / 0.05) + 1):
        reap()
        if not any(pid_alive(p) for p in pids) or time.time() > deadline:
            break
        time.sleep(0.05)
    for p in pids:
        if pid_alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for _ in range(40):
        reap()
        if not any(pid_alive(p) for p in pids):
            break
        time.sleep(0.05)


def reap():
    for _ in range(1000):
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def teardown(workdir):
    """Stop every process we started and delete our namespaces (idempotent)."""
    st = State(workdir)
    stop_pids(list(st.pids))
    # whatever still runs inside our namespaces (children of our processes)
    for ns in st.namespaces:
        r = run(["ip", "netns", "pids", ns], check=False, timeout=10)
        left = [int(x) for x in r.stdout.split() if x.strip().isdigit()]
        if left:
            stop_pids(left, grace=3.0)
    for ns in reversed(st.namespaces):
        run(["ip", "netns", "del", ns], check=False, timeout=30)
    for m in reversed(st.mounts):
        run(["umount", m], check=False, timeout=30)
    st.namespaces, st.pids, st.mounts = [], [], []
    st.save()


# --------------------------------------------------------------------------
# topology
# --------------------------------------------------------------------------
class Topo:
    def __init__(self, args, st):
        self.args = args
        self.st = st
        p = args.prefix
        self.br = f"{p}-br"
        self.origin = f"{p}-origin"
        self.sched = f"{p}-sched"
        self.cache = f"{p}-cache"
        self.nodes = [f"{p}-n{i}" for i in range(args.nodes)]
        self.port = 0

    def add_ns(self, ns):
        if ns in run(["ip", "netns", "list"]).stdout.split():
            raise RuntimeError(f"namespace {ns} already exists (a stale run? tear it down first)")
        run(["ip", "netns", "add", ns])
        self.st.add_ns(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        if self.args.tcp_cc:
            run(nsx(ns, "sysctl", "-q", "-w", f"net.ipv4.tcp_congestion_control={self.args.tcp_cc}"))

    def add_host(self, ns, ip, up, down):
        self.add_ns(ns)
        port = f"p{self.port}"
        self.port += 1
        run(["ip", "-n", self.br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(["ip", "-n", self.br, "link", "set", port, "master", "br0"])
        run(["ip", "-n", self.br, "link", "set", port, "up"])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        if up:  # host upload: egress of the host end
            self.shape(["-n", ns], "eth0", up)
        if down:  # host download: egress of the bridge port toward the host
            self.shape(["-n", self.br], port, down)

    def shape(self, where, dev, rate):
        """Limit `dev`'s egress to `rate`. `fifo`: one tbf, so a host's
        own ACKs wait behind up to 50 ms of its bulk data. `ackprio`: htb
        with small packets (IP length < 128: TCP and QUIC ACKs) ahead of
        the rest, as a host's fq_codel or fq keeps sparse flows ahead of
        bulk ones (this kernel has neither); bulk gets the same 50 ms of
        queue as tbf."""
        b = str(burst_bytes(self.args, rate))
        tc = ["tc", *where]
        if self.args.queue == "fifo":
            run([*tc, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", b, "latency", "50ms"])
            return
        queue = str(int(parse_rate(rate) / 8 * 0.05))
        run([*tc, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "20"])
        run([*tc, "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb",
             "rate", rate, "burst", b, "cburst", b])
        run([*tc, "class", "add", "dev", dev, "parent", "1:1", "classid", "1:10", "htb",
             "rate", f"{int(parse_rate(rate) / 10)}bit", "ceil", rate, "burst", b, "cburst", b, "prio", "0"])
        run([*tc, "class", "add", "dev", dev, "parent", "1:1", "classid", "1:20", "htb",
             "rate", f"{int(parse_rate(rate) * 0.9)}bit", "ceil", rate, "burst", b, "cburst", b, "prio", "1"])
        run([*tc, "qdisc", "add", "dev", dev, "parent", "1:10", "handle", "10:", "pfifo", "limit", "1000"])
        run([*tc, "qdisc", "add", "dev", dev, "parent", "1:20", "handle", "20:", "bfifo", "limit", queue])
        # IPv4 total length (bytes 2-3) below 128.
        run([*tc, "filter", "add", "dev", dev, "parent", "1:", "protocol", "ip", "prio", "1", "u32",
             "match", "u16", "0x0000", "0xff80", "at", "2", "flowid", "1:10"])

    def build(self):
        a = self.args
        self.add_ns(self.br)
        run(["ip", "-n", self.br, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.br, "link", "set", "br0", "up"])
        self.add_host(self.origin, ORIGIN_IP, a.origin_rate, a.origin_rate)
        self.add_host(self.sched, SCHED_IP, None, None)
        self.add_host(self.cache, CACHE_IP, a.rate, a.rate)
        for i, ns in enumerate(self.nodes):
            self.add_host(ns, node_ip(i), a.rate, a.rate)
        log(f"topology up: bridge + origin + scheduler + cache + {len(self.nodes)} nodes")


def tx_bytes(ns, dev="eth0"):
    r = run(["ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev])
    return int(json.loads(r.stdout)[0]["stats64"]["tx"]["bytes"])


def port_bytes(topo):
    """Bytes each node has downloaded and uploaded, read at its bridge port
    (one `ip` call for all ports): [(down, up)] in node order."""
    r = run(["ip", "-n", topo.br, "-s", "-j", "link", "show"])
    stats = {l["ifname"]: l["stats64"] for l in json.loads(r.stdout)}
    first = 3  # p0 origin, p1 scheduler, p2 cache, then the nodes
    return [(stats[f"p{first + i}"]["tx"]["bytes"], stats[f"p{first + i}"]["rx"]["bytes"])
            for i in range(len(topo.nodes))]


def wait_http(ns, url, what, timeout=60, body=None):
    """Waits for a 200 (with exactly `body`, if given)."""
    deadline = time.time() + timeout
    for _ in range(int(timeout / 0.1) + 1):
        if body is None:
            r = run(nsx(ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "2", url), check=False,
                    timeout=10)
            if r.stdout.strip() == "200":
                return
        else:
            r = run(nsx(ns, "curl", "-s", "-f", "-m", "2", url), check=False, timeout=10)
            if r.returncode == 0 and r.stdout == body:
                return
        if time.time() > deadline:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready at {url} within {timeout}s")


def cpu_seconds(pid):
    """User + system CPU seconds `pid` has used so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawn(st, ns, args, logpath, env=None):
    lf = open(logpath, "ab")
    p = subprocess.Popen(nsx(ns, *args), stdout=lf, stderr=lf, stdin=subprocess.DEVNULL,
                         env=env, start_new_session=True)
    lf.close()
    st.add_pid(p.pid)
    return p


# --------------------------------------------------------------------------
# image
# --------------------------------------------------------------------------
def build_image(args, repo_root):
    """An OCI layout with `layers` layers of random bytes (cached per size)."""
    cache_dir = os.path.join(repo_root, "target", "bench", "swarm-image")
    layout = os.path.join(cache_dir, f"oci-{args.size_mib}mib-{args.layers}l")
    done = layout + ".done"
    if os.path.exists(done) and not args.fresh_image:
        log(f"image: reusing {layout}")
        return layout
    log(f"image: generating {args.size_mib} MiB in {args.layers} layers of /dev/urandom with umoci")
    if os.path.exists(layout):
        run(["rm", "-rf", "--one-file-system", layout])
    if os.path.exists(done):
        os.unlink(done)
    os.makedirs(cache_dir, exist_ok=True)
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", f"{layout}:{TAG}"])
    per = args.size_mib * 1024 * 1024 // args.layers
    for i in range(args.layers):
        data = os.path.join(cache_dir, f"layer{i}.bin")
        with open(data, "wb") as out:
            subprocess.run(["head", "-c", str(per), "/dev/urandom"], stdout=out, check=True, timeout=300)
        run(["umoci", "insert", "--image", f"{layout}:{TAG}", data, f"/layer{i}.bin"], timeout=600)
        os.unlink(data)
    open(done, "w").close()
    return layout


def client_tmpfs_bytes(args):
    """Size of the clients' tmpfs: every node's copy of the image."""
    return int(args.nodes * args.size_mib * (1 << 20) * 1.1) + (64 << 20)


def client_tmpfs_problem(args):
    """Why `--client-out tmpfs` cannot work here, or None."""
    need = client_tmpfs_bytes(args)
    with open("/proc/meminfo") as f:
        avail = next(int(l.split()[1]) * 1024 for l in f if l.startswith("MemAvailable:"))
    if avail < need + (1 << 30):
        return (f"--client-out tmpfs needs {need >> 20} MiB of memory for {args.nodes} pulled images and "
                f"1 GiB to spare, but {avail >> 20} MiB is available; use --client-out disk or fewer --nodes")
    return None


def client_root(args, st, work):
    """Where the nodes' clients write what they pull. `tmpfs` (default):
    a tmpfs of our own, because the N emulated nodes share this machine's
    one disk, and skopeo fsyncs every blob it writes: N clients flushing
    the same layers at the same instant queue behind each other, which N
    real nodes with a disk each do not (0.1-1.1 s per node on a 2-core VM,
    measured in 2026-11). `disk`: under the work dir."""
    root = os.path.join(work, "client")
    os.makedirs(root, exist_ok=True)
    if args.client_out == "tmpfs":
        run(["mount", "-t", "tmpfs", "-o", f"size={client_tmpfs_bytes(args)},mode=0700", "shoal-bench-client", root])
        st.add_mount(root)
    return root


def client_dir(args, method):
    """Where `method`'s clients write (one `out-K` per node); see `client_root`."""
    return os.path.join(args.client_root, method)


def origin_manifest(topo):
    url = f"http://{ORIGIN_IP}:5000/v2/{REPO}/manifests/{TAG}"
    r = run(nsx(topo.origin, "curl", "-sf", "-H", f"Accept: {MANIFEST_ACCEPT}", url))
    raw = r.stdout.encode()
    m = json.loads(raw)
    blobs = [m["config"]] + m["layers"]
    return {
        "manifest_digest": "sha256:" + hashlib.sha256(raw).hexdigest(),
        "manifest_bytes": len(raw),
        "blobs": [{"digest": b["digest"], "size": b["size"]} for b in blobs],
        "layers": [b["size"] for b in m["layers"]],
    }


# --------------------------------------------------------------------------
# one method = fresh servers, N simultaneous pulls, measurements, teardown
# --------------------------------------------------------------------------
PULL_SCRIPT = r'''
go="$1"; out="$2"; res="$3"; src="$4"; tmo="$5"
i=0
while [ ! -e "$go" ] && [ $i -lt 12000 ]; do sleep 0.005; i=$((i+1)); done
# CPU ticks of this shell's reaped children (cutime + cstime), read
# with builtins only, before and after the client: the difference is the
# client's CPU (timeout + skopeo), not the sleeps of the wait above.
ticks() { read -r st < /proc/$$/stat; set -- ${st##*) }; echo $(( ${14} + ${15} )); }
c0=$(ticks)
s=$(date +%s.%N)
timeout "$tmo" skopeo copy --insecure-policy --src-tls-verify=false "docker://$src" "oci:$out:pulled" >"$res.log" 2>&1
rc=$?
e=$(date +%s.%N)
c1=$(ticks)
echo "$s $e $rc $((c1 - c0))" > "$res"
'''


def cpu_times():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v), idle


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for _ in range(1 << 30):
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return "sha256:" + h.hexdigest()


def pull_all(args, topo, st, work, method, source_for=None, launch=None):
    """All nodes start at one instant; returns per-node results + CPU + egress.

    By default each node runs PULL_SCRIPT (skopeo from `source_for(i)`),
    and a node is done when its wrapper exits. `launch(i, ns, go, out, res)`
    instead starts a process per node that waits for `go`, writes
    `res` ("start end rc") when its copy is complete and keeps running
    (a seeding BitTorrent client): a node is then done when `res` exists
    (or its process died), and the processes are left running, returned
    as `m["procs"]` (not JSON), for the caller to read and stop."""
    mdir = os.path.join(work, method)
    os.makedirs(mdir, exist_ok=True)
    go = os.path.join(mdir, "go")
    cdir = client_dir(args, method)
    os.makedirs(cdir, exist_ok=True)
    script = os.path.join(work, "pull.sh")
    with open(script, "w") as f:
        f.write(PULL_SCRIPT)
    procs = []
    for i, ns in enumerate(topo.nodes):
        out = os.path.join(cdir, f"out-{i}")
        res = os.path.join(mdir, f"res-{i}")
        if launch:
            procs.append(launch(i, ns, go, out, res))
        else:
            procs.append(spawn(st, ns, ["bash", script, go, out, res, source_for(i), str(args.pull_timeout)],
                               os.path.join(mdir, f"wrapper-{i}.log")))
    ress = [os.path.join(mdir, f"res-{i}") for i in range(len(procs))]

    def done(i):
        return procs[i].poll() is not None or (launch is not None and os.path.exists(ress[i]))

    time.sleep(1.0)  # every wrapper is polling for the go file
    # CPU the wrappers used waiting (subtracted where a wrapper execs the client)
    wait_cpu = [cpu_seconds(p.pid) for p in procs]
    tx0 = tx_bytes(topo.origin)
    ports0 = port_bytes(topo)
    c0 = cpu_times()
    t0 = time.time()
    open(go, "w").close()
    deadline = t0 + args.pull_timeout + 30
    peak_busy, last, samples, tx_series, node_series = 0.0, c0, [], [], []
    for _ in range(int((args.pull_timeout + 30) / 0.5) + 1):
        if all(done(i) for i in range(len(procs))) or time.time() > deadline:
            break
        time.sleep(0.5)
        c = cpu_times()
        try:
            now = round(time.time() - t0, 2)
            tx_series.append((now, tx_bytes(topo.origin) - tx0))
            node_series.append([now] + [[d - d0, u - u0] for (d, u), (d0, u0) in zip(port_bytes(topo), ports0)])
        except (RuntimeError, KeyError, ValueError):
            pass
        dt, di = c[0] - last[0], c[1] - last[1]
        if dt > 0:
            busy = 1 - di / dt
            peak_busy = max(peak_busy, busy)
            samples.append(round(busy, 3))
        last = c
    c1 = cpu_times()
    tx1 = tx_bytes(topo.origin)
    rx = sum(d - d0 for (d, _), (d0, _) in zip(port_bytes(topo), ports0))
    with open("/proc/loadavg") as f:
        loadavg = f.read().split()[:3]
    for i, p in enumerate(procs):
        if not done(i):
            log(f"{method}: node {i}'s pull outlived its deadline" + ("" if launch else "; stopping it"))
            if not launch:  # the caller reads the CPU of its processes, then stops them
                stop_pids([p.pid], grace=2)
    nodes = []
    tck = os.sysconf("SC_CLK_TCK")
    for i in range(len(topo.nodes)):
        try:
            with open(ress[i]) as f:
                fields = f.read().split()
            s, e, rc = fields[:3]
            n = {"node": i, "start_skew_s": round(float(s) - t0, 3),
                 "completion_s": round(float(e) - t0, 3), "rc": int(rc)}
            if len(fields) > 3:
                n["client_cpu_s"] = round(int(fields[3]) / tck, 2)
            nodes.append(n)
        except (OSError, ValueError):
            rc = procs[i].poll()
            nodes.append({"node": i, "completion_s": None, "rc": rc if rc not in (None, 0) else -1})
    busy = 1 - (c1[1] - c0[1]) / max(1, c1[0] - c0[0])
    m = {
        "origin_tx_bytes": tx1 - tx0,
        # link level, at the nodes' bridge ports, over the pull window
        "nodes_rx_bytes": rx,
        "cpu_busy": round(busy, 3),
        "cpu_busy_peak_0_5s": round(peak_busy, 3),
        "cpu_busy_samples": samples,
        "origin_tx_series": tx_series,
        # [t, [down, up] per node], bytes since the start, at the bridge ports
        "node_series": node_series,
        "loadavg_end": loadavg,
        "wall_s": round(time.time() - t0, 3),
    }
    if launch:
        m["procs"] = procs
        m["wait_cpu_s"] = wait_cpu
    return mdir, nodes, m


def verify(cdir, nodes, image):
    want = {b["digest"] for b in image["blobs"]}
    for n in nodes:
        out = os.path.join(cdir, f"out-{n['node']}")
        ok, why = True, []
        if n["rc"] != 0:
            ok = False
            why.append(f"client rc {n['rc']}")
        for d in sorted(want):
            p = os.path.join(out, "blobs", "sha256", d.split(":", 1)[1])
            if not os.path.exists(p):
                ok = False
                why.append(f"missing {d[:19]}")
            elif sha256_file(p) != d:
                ok = False
                why.append(f"bad digest {d[:19]}")
        mp = os.path.join(out, "blobs", "sha256", image["manifest_digest"].split(":", 1)[1])
        n["manifest_matches_origin"] = os.path.exists(mp) and sha256_file(mp) == image["manifest_digest"]
        n["digests_ok"] = ok
        if why:
            n["problems"] = why
        if os.path.isdir(out):
            run(["rm", "-rf", "--one-file-system", out])


def write_certs(args, work, topo):
    pki = os.path.join(work, "pki")
    run([args.shoal, "certs", "ca", "--out", os.path.join(pki, "ca")])
    run([args.shoal, "certs", "scheduler", "--ca", os.path.join(pki, "ca"), "--host", "scheduler",
         "--san", SCHED_IP, "--out", os.path.join(pki, "scheduler")])
    for i in range(len(topo.nodes)):
        run([args.shoal, "certs", "node", "--ca", os.path.join(pki, "ca"), "--host", f"node-{i}",
             "--san", node_ip(i), "--out", os.path.join(pki, f"node-{i}")])
    return pki


def scrape_metrics(ns, url, path):
    r = run(nsx(ns, "curl", "-s", "-m", "5", url), check=False, timeout=15)
    with open(path, "w") as f:
        f.write(r.stdout)
    return r.stdout


def method_shoal(args, topo, st, work, image):
    return run_shoal(args, topo, st, work, image, "shoal", scheduler="up")


def method_shoal_nosched(args, topo, st, work, image):
    """Daemons only: no scheduler; the discovery DHT finds the holders."""
    return run_shoal(args, topo, st, work, image, "shoal-nosched", scheduler="none")


def method_shoal_killed(args, topo, st, work, image):
    """The scheduler runs until every daemon registered, then is killed
    (SIGKILL) just before the pull: the daemons answer joins from the DHT."""
    return run_shoal(args, topo, st, work, image, "shoal-killed", scheduler="killed")


def upload_rate_line(args):
    """The daemon's default (no `upload_rate`: uploads unlimited, as an
    operator runs it) unless --upload-share asks for a cap."""
    if args.upload_share is None:
        return ""
    return f"upload_rate = {int(parse_rate(args.rate) / 8 * args.upload_share)}\n"


def daemon_config(args, pki, mdir, i, schedulers):
    return f'''listen = "127.0.0.1:65001"
metrics_listen = "0.0.0.0:65002"
data_dir = "{os.path.join(mdir, f"store-{i}")}"
default_registry = "{ORIGIN_IP}:5000"
[registries."{ORIGIN_IP}:5000"]
url = "http://{ORIGIN_IP}:5000"
[swarm]
enabled = true
host = "node-{i}"
listen = "{node_ip(i)}:65003"
certs_dir = "{os.path.join(pki, f"node-{i}")}"
schedulers = {schedulers}
{upload_rate_line(args)}''' + "".join(line + "\n" for line in args.swarm_set) + f'''
# As the shipped ConfigMap: the discovery DHT, bootstrapped from node 0.
[swarm.discovery]
listen = "{node_ip(i)}:65006"
bootstrap = ["{node_ip(0)}:65006"]
'''


def run_shoal(args, topo, st, work, image, name, scheduler):
    mdir = os.path.join(work, name)
    os.makedirs(mdir, exist_ok=True)
    pki = os.path.join(work, "pki")
    env = dict(os.environ, RUST_LOG=args.rust_log)
    sched = None
    if scheduler != "none":
        sched = spawn(st, topo.sched, [args.shoal, "scheduler", "--listen", f"{SCHED_IP}:65004",
                                       "--metrics-listen", f"{SCHED_IP}:65005",
                                       "--certs-dir", os.path.join(pki, "scheduler")],
                      os.path.join(mdir, "scheduler.log"), env=env)
        wait_http(topo.sched, f"http://{SCHED_IP}:65005/readyz", "scheduler")
    schedulers = f'["{SCHED_IP}:65004"]' if sched else "[]"
    procs = []
    for i, ns in enumerate(topo.nodes):
        cfg = os.path.join(mdir, f"node-{i}.toml")
        with open(cfg, "w") as f:
            f.write(daemon_config(args, pki, mdir, i, schedulers))
        procs.append(spawn(st, ns, [args.shoal, "daemon", "--config", cfg],
                           os.path.join(mdir, f"daemon-{i}.log"), env=env))
    for i, ns in enumerate(topo.nodes):
        # With a scheduler, wait until each daemon registered ("ready" alone).
        wait_http(ns, "http://127.0.0.1:65002/readyz", f"daemon {i}", body="ready\n" if sched else None)
    log(f"{name}: {'scheduler + ' if sched else ''}{len(topo.nodes)} daemons ready")
    if scheduler == "killed":
        stop_pids([sched.pid], grace=0)
        sched = None
        log(f"{name}: scheduler killed before the pull")
    try:
        mdir, nodes, m = pull_all(args, topo, st, work, name, lambda i: f"127.0.0.1:65001/{REPO}:{TAG}")
        for i, ns in enumerate(topo.nodes):
            text = scrape_metrics(ns, "http://127.0.0.1:65002/metrics", os.path.join(mdir, f"metrics-{i}.txt"))
            counters = {}
            for line in text.splitlines():
                for key in ("shoal_origin_received_bytes_total", "shoal_peer_received_bytes_total",
                            "shoal_peer_sent_bytes_total", "shoal_peer_quic_sent_packets_total",
                            "shoal_peer_quic_lost_packets_total"):
                    if line.startswith(key + " "):
                        counters[key[len("shoal_"):-len("_total")]] = int(float(line.split()[1]))
            nodes[i]["shoal"] = counters
            scrape_metrics(ns, "http://127.0.0.1:65002/api/v1/status", os.path.join(mdir, f"status-{i}.json"))
        sent = sum(n["shoal"].get("peer_quic_sent_packets", 0) for n in nodes)
        lost = sum(n["shoal"].get("peer_quic_lost_packets", 0) for n in nodes)
        log(f"{name}: QUIC packets lost {lost} of {sent} sent between peers ({100 * lost / max(sent, 1):.2f}%)")
        if sched:
            scrape_metrics(topo.sched, f"http://{SCHED_IP}:65005/metrics",
                           os.path.join(mdir, "metrics-scheduler.txt"))
        # `ip netns exec` execs the daemon, so these PIDs are the daemons'.
        m["daemon_cpu_s"] = [round(cpu_seconds(p.pid), 2) for p in procs]
        m["daemon_cpu_total_s"] = round(sum(m["daemon_cpu_s"]), 2)
        m["daemon_cpu_what"] = f"{len(procs)} shoal daemons"
        if sched:
            m["scheduler_cpu_s"] = round(cpu_seconds(sched.pid), 2)
        log(f"{name}: daemons used {sum(m['daemon_cpu_s']):.1f} CPU seconds "
            f"({min(m['daemon_cpu_s']):.2f}-{max(m['daemon_cpu_s']):.2f} per node)")
    finally:
        stop_pids([p.pid for p in procs] + ([sched.pid] if sched else []), grace=args.stop_grace)
        run(["rm", "-rf", "--one-file-system"] + [os.path.join(mdir, f"store-{i}") for i in range(len(topo.nodes))])
    return mdir, nodes, m


def registry_config(path, addr, root, proxy=None):
    c = {"version": "0.1", "log": {"level": "error"},
         "storage": {"filesystem": {"rootdirectory": root}, "delete": {"enabled": True}},
         "http": {"addr": addr}}
    if proxy:
        c["proxy"] = {"remoteurl": proxy}
    with open(path, "w") as f:
        json.dump(c, f)


def method_direct(args, topo, st, work, image):
    return pull_all(args, topo, st, work, "direct", lambda i: f"{ORIGIN_IP}:5000/{REPO}:{TAG}")


def method_cache(args, topo, st, work, image):
    mdir = os.path.join(work, "cache")
    os.makedirs(mdir, exist_ok=True)
    root = os.path.join(mdir, "registry")
    cfg = os.path.join(mdir, "cache.json")
    registry_config(cfg, f"{CACHE_IP}:5000", root, proxy=f"http://{ORIGIN_IP}:5000")
    p = spawn(st, topo.cache, ["docker-registry", "serve", cfg], os.path.join(mdir, "cache.log"))
    try:
        wait_http(topo.cache, f"http://{CACHE_IP}:5000/v2/", "pull-through cache")
        mdir, nodes, m = pull_all(args, topo, st, work, "cache", lambda i: f"{CACHE_IP}:5000/{REPO}:{TAG}")
        # `ip netns exec` execs the registry, so this PID is the registry's.
        m["daemon_cpu_total_s"] = round(cpu_seconds(p.pid), 2)
        m["daemon_cpu_what"] = "the cache registry"
        return mdir, nodes, m
    finally:
        stop_pids([p.pid], grace=args.stop_grace)
        run(["rm", "-rf", "--one-file-system", root])


METHODS = {"shoal": method_shoal, "shoal-nosched": method_shoal_nosched, "shoal-killed": method_shoal_killed,
           "direct": method_direct, "cache": method_cache,
           "bittorrent": functools.partial(bittorrent.method_bittorrent, sys.modules[__name__])}


def parse_size(s):
    """A tc size (`256kb`, `1mb`, `500000`) in bytes; tc's k/m/g are 1024-based."""
    t = s.strip().lower()
    for suf, mul in (("kb", 1 << 10), ("mb", 1 << 20), ("gb", 1 << 30), ("k", 1 << 10), ("m", 1 << 20),
                     ("g", 1 << 30), ("b", 1)):
        if t.endswith(suf):
            return int(float(t[: -len(suf)]) * mul)
    if t.isdigit():
        return int(t)
    raise ValueError(f"size {s!r}: use tc units like 256kb")


def kernel_hz():
    """CONFIG_HZ of the running kernel (100, the most demanding common
    value, if the kernel does not say)."""
    paths = ["/proc/config.gz", f"/boot/config-{os.uname().release}"]
    for p in paths:
        try:
            opener = gzip.open if p.endswith(".gz") else open
            with opener(p, "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=", 1)[1])
        except OSError:
            continue
    return 100


def burst_bytes(args, rate):
    """The burst for a link shaped to `rate`: `--burst`, raised to
    rate/HZ where that is larger, as tc-tbf(8) asks (one timer tick's
    worth of bytes: 500 kB for 1 Gbit/s at HZ=250; the default 256kb
    covers up to about 520 Mbit/s). A margin: with hrtimers a 256 kB
    burst also reached 1 Gbit/s here (README, Shaping)."""
    floor = int(parse_rate(rate) / 8 / args.hz) + 1
    return max(parse_size(args.burst), floor)


def parse_rate(s):
    s = s.strip().lower()
    for suf, mul in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1.0)):
        if s.endswith(suf):
            return float(s[: -len(suf)]) * mul
    raise ValueError(f"rate {s!r}: use tc units like 100mbit")


def cpu_per_gb(m, nodes, received):
    """CPU seconds per GB (10^9 bytes) the nodes received, the nodes'
    daemons' (shoal daemons, aria2c leechers, the cache registry) apart
    from their clients' (skopeo). Received = N·S, the image bytes every
    node ends with, so every method is charged for the same work."""
    m["received_bytes"] = received
    gb = received / 1e9
    if "daemon_cpu_total_s" in m:
        m["daemon_cpu_s_per_gb"] = round(m["daemon_cpu_total_s"] / gb, 3)
    client = [x["client_cpu_s"] for x in nodes if "client_cpu_s" in x]
    if client:
        m["client_cpu_total_s"] = round(sum(client), 2)
        m["client_cpu_s_per_gb"] = round(m["client_cpu_total_s"] / gb, 3)


def table(result):
    tstar = result["t_star_s"]
    S = result["image_bytes"]
    lines = [
        f"N={result['nodes']}, node rate {result['rate']} up/down, origin {result['origin_rate']} up/down, "
        f"image {result['image_bytes'] / 2**20:.1f} MiB ({result['layer_count']} layers), "
        f"T* = {tstar:.2f} s; client output on {result.get('client_out', 'disk')}; shoal uploads "
        + (f"capped at {result['upload_share']} of the link" if result.get("upload_share") else "uncapped (default)"),
        "",
        "| method | p50 (s) | p50 / T* | max (s) | max / T* | origin egress (MiB) | egress / S | digests "
        "| CPU busy (avg / peak) | CPU s per GB received (daemon / client) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in result["methods"].items():
        if m.get("error"):
            lines.append(f"| {name} | failed: {m['error'][:80]} | | | | | | | | |")
            continue
        cpu = f"{m['cpu_busy'] * 100:.0f}% / {m['cpu_busy_peak_0_5s'] * 100:.0f}%"
        if m["cpu_bound"]:
            cpu += " **CPU-bound**"
        ok = sum(1 for n in m["nodes"] if n.get("digests_ok"))
        per_gb = " / ".join(f"{m[k]:.2f}" if k in m else "—" for k in ("daemon_cpu_s_per_gb", "client_cpu_s_per_gb"))
        lines.append(
            f"| {name} | {m['p50_s']:.2f} | {m['p50_over_t_star']:.2f}x | {m['max_s']:.2f} | "
            f"{m['max_over_t_star']:.2f}x | {m['origin_tx_bytes'] / 2**20:.1f} | "
            f"{m['origin_egress_over_s']:.3f}x | {ok}/{len(m['nodes'])} ok | {cpu} | {per_gb} |")
    lines.append("")
    lines.append(f"Targets (shoal): p50 <= 1.15x T*, max <= 1.3x T*, origin egress <= 1.05x S. "
                 f"Egress is link-level (headers included). CPU s per GB: user + system seconds over "
                 f"N x S bytes; daemon = shoal daemons, aria2c leechers or the cache registry, "
                 f"client = skopeo (bittorrent has none: the leecher is the client).")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", nargs="?", default="bench", choices=["bench", "teardown"])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--rate", default="100mbit", help="each node's and the cache's upload and download (tc units)")
    ap.add_argument("--upload-share", type=float, default=None,
                    help="set shoal's upload_rate to this share of --rate (default: not set, the "
                         "daemon's default of unlimited uploads)")
    ap.add_argument("--swarm-set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra line for each daemon's [swarm] section, e.g. max_uploads=4 (repeatable)")
    ap.add_argument("--origin-rate", default=None, help="origin upload and download (default: --rate)")
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--methods", default="shoal,direct,cache")
    ap.add_argument("--burst", default="256kb",
                    help="tbf/htb burst (raised to rate/HZ where that is larger)")
    ap.add_argument("--queue", default="fifo", choices=["fifo", "ackprio"],
                    help="each shaped link's queue: one FIFO (tbf), or ACK-sized packets first (htb)")
    ap.add_argument("--tcp-cc", default=None,
                    help="TCP congestion control in every namespace (default: inherit the host's)")
    ap.add_argument("--client-out", default="tmpfs", choices=["tmpfs", "disk"],
                    help="where each node's client writes the image: a tmpfs of the harness's own (default; "
                         "the emulated nodes share one disk) or the work dir on disk")
    ap.add_argument("--pull-timeout", type=int, default=900, help="seconds per pull (each method)")
    ap.add_argument("--stop-grace", type=float, default=10.0)
    ap.add_argument("--prefix", default="shb")
    ap.add_argument("--shoal", default=None)
    ap.add_argument("--rust-log", default="info")
    ap.add_argument("--fresh-image", action="store_true")
    ap.add_argument("--out", default=None, help="JSON path (default target/bench/swarm-N.json)")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    if args.cmd == "teardown":
        teardown(args.workdir)
        return 0
    if os.geteuid() != 0:
        print("needs root (network namespaces, tc)", file=sys.stderr)
        return 2
    if not 1 <= args.nodes <= 200:
        print("--nodes must be 1..200", file=sys.stderr)
        return 2
    if args.client_out == "tmpfs" and (why := client_tmpfs_problem(args)):
        print(why, file=sys.stderr)
        return 2
    if args.tcp_cc:
        allowed = open("/proc/sys/net/ipv4/tcp_allowed_congestion_control").read().split()
        if args.tcp_cc not in allowed:
            print(f"--tcp-cc {args.tcp_cc}: namespaces may only pick from the host's "
                  f"net.ipv4.tcp_allowed_congestion_control ({' '.join(allowed)}); add it there "
                  f"(sysctl -w net.ipv4.tcp_allowed_congestion_control=\"{' '.join(allowed + [args.tcp_cc])}\")",
                  file=sys.stderr)
            return 2
    repo_root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    args.shoal = os.path.abspath(args.shoal or os.path.join(repo_root, "target", "release", "shoal"))
    args.origin_rate = args.origin_rate or args.rate
    args.hz = kernel_hz()
    try:
        bursts = {r: burst_bytes(args, r) for r in {args.rate, args.origin_rate}}
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    for r, b in sorted(bursts.items()):
        if b > parse_size(args.burst):
            log(f"burst: {b} bytes for {r} links (--burst {args.burst} is below rate/HZ, HZ={args.hz})")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            print(f"unknown method {m}", file=sys.stderr)
            return 2
    if "bittorrent" in methods and (lack := bittorrent.missing_tools()):
        print("--methods bittorrent needs " + ", ".join(t for t, _ in lack) +
              f": apt-get install -y {' '.join(pkg for _, pkg in lack)}", file=sys.stderr)
        return 2

    def on_signal(sig, _frame):
        raise SystemExit(128 + sig)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, on_signal)

    st = State(args.workdir)
    work = args.workdir
    try:
        layout = build_image(args, repo_root)
        topo = Topo(args, st)
        topo.build()
        root = os.path.join(work, "origin-storage")
        cfg = os.path.join(work, "origin.json")
        registry_config(cfg, f"{ORIGIN_IP}:5000", root)
        spawn(st, topo.origin, ["docker-registry", "serve", cfg], os.path.join(work, "origin.log"))
        wait_http(topo.origin, f"http://{ORIGIN_IP}:5000/v2/", "origin registry")
        run(nsx(topo.origin, "skopeo", "copy", "--insecure-policy", "--dest-tls-verify=false",
                f"oci:{layout}:{TAG}", f"docker://{ORIGIN_IP}:5000/{REPO}:{TAG}"), timeout=600)
        image = origin_manifest(topo)
        S = image["manifest_bytes"] + sum(b["size"] for b in image["blobs"])
        log(f"origin: {REPO}:{TAG} pushed, S = {S} bytes, {image['manifest_digest'][:19]}")
        args.client_root = client_root(args, st, work)
        if any(m.startswith("shoal") for m in methods):
            write_certs(args, work, topo)
        n = args.nodes
        B_down = parse_rate(args.rate) / 8
        B_up = B_down
        B_origin = parse_rate(args.origin_rate) / 8
        tstar = max(S / B_down, S / B_origin, n * S / (B_origin + n * B_up))
        with open("/proc/cpuinfo") as f:
            cpu_model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
        result = {
            "nodes": n, "rate": args.rate, "origin_rate": args.origin_rate, "burst": args.burst,
            "burst_bytes": bursts, "kernel_hz": args.hz, "queue": args.queue,
            "swarm_set": args.swarm_set,
            "upload_share": args.upload_share,
            "tcp_cc": args.tcp_cc or open("/proc/sys/net/ipv4/tcp_congestion_control").read().strip(),
            "size_mib": args.size_mib, "layer_count": args.layers, "image_bytes": S,
            "image": image, "t_star_s": tstar,
            "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model, "kernel": os.uname().release},
            "client": "skopeo copy docker:// -> oci: (layers in parallel)", "client_out": args.client_out,
            "methods": {},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        for name in methods:
            log(f"method {name}: {n} nodes pulling at once")
            try:
                mdir, nodes, m = METHODS[name](args, topo, st, work, image)
                verify(client_dir(args, name), nodes, image)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                log(f"method {name} failed: {e}")
                result["methods"][name] = {"error": str(e)}
                continue
            times = [x["completion_s"] for x in nodes if x["completion_s"] is not None and x["rc"] == 0]
            m["nodes"] = nodes
            m["all_ok"] = len(times) == n and all(x.get("digests_ok") for x in nodes)
            if times:
                m["p50_s"] = statistics.median(times)
                m["max_s"] = max(times)
            else:
                m["p50_s"] = m["max_s"] = float("nan")
            if len(times) < n:
                m["max_s"] = float("inf")
            m["p50_over_t_star"] = m["p50_s"] / tstar
            m["max_over_t_star"] = m["max_s"] / tstar
            m["origin_egress_over_s"] = m["origin_tx_bytes"] / S
            m["cpu_bound"] = m["cpu_busy"] >= 0.9
            cpu_per_gb(m, nodes, n * S)
            result["methods"][name] = m
            log(f"method {name}: p50 {m['p50_s']:.2f}s max {m['max_s']:.2f}s egress {m['origin_egress_over_s']:.3f}x S "
                f"cpu {m['cpu_busy']:.2f} ok={m['all_ok']}")
            # keep the logs of this run next to the JSON
            keep = os.path.join(repo_root, "target", "bench", f"swarm-{n}-logs", name)
            run(["rm", "-rf", keep], check=False)
            os.makedirs(keep, exist_ok=True)
            for fn in os.listdir(mdir):
                p = os.path.join(mdir, fn)
                if os.path.isfile(p) and (fn.endswith(".log") or fn.endswith(".txt") or fn.endswith(".json")
                                          or fn.startswith("res-") or fn.endswith(".toml")):
                    run(["cp", p, keep], check=False)
        result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        out = args.out or os.path.join(repo_root, "target", "bench", f"swarm-{n}.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        md = table(result)
        result["table_md"] = md
        with open(out, "w") as f:
            json.dump(result, f, indent=2, default=str)
        with open(out[:-5] + ".md", "w") as f:
            f.write(md + "\n")
        print(md)
        log(f"wrote {out}")
        bad = [k for k, v in result["methods"].items() if v.get("error") or not v.get("all_ok")]
        return 1 if bad else 0
    finally:
        log("teardown")
        teardown(args.workdir)


if __name__ == "__main__":
    sys.exit(main())
