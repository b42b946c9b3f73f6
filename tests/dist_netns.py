#!/usr/bin/env python3
"""Data-parallel `limuon train` between two "hosts": two network namespaces joined by a veth pair,
so the ranks reach each other only over TCP on a real (virtual) link, with GLOO_SOCKET_IFNAME set
as on a multi-machine job (issue 18, item 4 "Real hosts").

  A. 2 ranks, one per namespace, train a few steps: both exit 0, rank 0's summary reports 2 ranks
     and all-reduce traffic, the traffic crossed the veth link, the loss went down and the final
     weights are finite; rank 1 writes nothing.
  B. The same, longer, with checkpoints every 2 steps; once checkpoints exist the link is cut
     (rank 1's end of the veth goes down, as a pulled cable). Rank 0 must exit non-zero within
     --dist-timeout plus a margin, with an error naming the lost peer ("rank 1" or its address);
     rank 1 must exit too; nothing may hang (both are killed after a hard limit, which fails the
     test). Every checkpoint rank 0 left must be complete and resume on a single process, and
     the newest must carry the run, on one process, to its last step.

Needs root and `ip` (iproute2) with network namespaces; otherwise it prints "SKIP: <reason>" and
exits 0, or fails (exit 1) when LIMUON_REQUIRE_NETNS=1. LIMUON_NETNS_EXTRA adds flags (split like
a shell does) to every `limuon train` it runs, e.g. LIMUON_NETNS_EXTRA="--shard-state".
The namespaces (limuon-h0-PID, limuon-h1-PID) and the veth pair are always removed at the end, on
failure, SIGINT, SIGTERM and SIGHUP too; ones a killed earlier run left (its PID gone) are removed
at the start.

Usage: dist_netns.py path/to/limuon
"""
import array
import atexit
import ctypes
import json
import math
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zipfile

if len(sys.argv) != 2:
    print(__doc__.strip().splitlines()[-1], file=sys.stderr)
    sys.exit(2)
BIN = os.path.abspath(sys.argv[1])
T0 = time.time()
PID = os.getpid()
REQUIRE = os.environ.get("LIMUON_REQUIRE_NETNS", "") not in ("", "0")
EXTRA = shlex.split(os.environ.get("LIMUON_NETNS_EXTRA", ""))

NS = [f"limuon-h0-{PID}", f"limuon-h1-{PID}"]
VETH = [f"lmn0-{PID}", f"lmn1-{PID}"]  # at most 12 characters (IFNAMSIZ is 16)
# A /24 derived from the PID (the namespaces are private, so it cannot clash with the host's
# networks anyway; different PIDs merely keep concurrent runs' addresses apart in logs).
NET = f"10.{200 + (PID >> 8) % 50}.{PID & 255}"
ADDR = [f"{NET}.1", f"{NET}.2"]
PORT = 29500 + PID % 1000

DIST_TIMEOUT = 10   # --dist-timeout of scenario B
DETECT_LIMIT = DIST_TIMEOUT + 30  # rank 0 must have exited this long after the cut
HARD_LIMIT = 60     # then both ranks are killed and the test fails
STEPS_A = 6
STEPS_B = 1500      # about 20 s for 2 ranks over the veth at --threads 1; the cut comes after ~1 s

failures, passed = [], 0
children = []       # Popen objects still to be reaped at cleanup
TMP = None


def log(msg):
    print(f"[{time.time() - T0:5.1f}s] {msg}", flush=True)


def check(name, cond, detail=""):
    global passed
    if cond:
        passed += 1
        log(f"ok   {name}")
    else:
        failures.append(f"{name}: {str(detail)[-1500:]}")
        log(f"FAIL {name}")
    return cond


def sh(*args, timeout=30):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


# --- cleanup: namespaces, veths, processes, temp dir; on every way out ----------------------------

_cleaned = False


def cleanup():
    global _cleaned
    if _cleaned:
        return
    _cleaned = True
    for p in children:
        if p.poll() is None:
            p.kill()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    if shutil.which("ip"):
        for ns in NS:
            if os.path.exists(f"/var/run/netns/{ns}") or os.path.exists(f"/run/netns/{ns}"):
                sh("ip", "netns", "del", ns)  # takes its end of the veth pair, and so the pair, along
        for v in VETH:  # only there if a run stopped between creating the pair and moving it
            if os.path.exists(f"/sys/class/net/{v}"):
                sh("ip", "link", "del", v)
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


def on_signal(signum, _frame):
    log(f"signal {signum}: cleaning up")
    cleanup()
    os._exit(128 + signum)


atexit.register(cleanup)
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, on_signal)


def skip(reason):
    if REQUIRE:
        print(f"FAIL (LIMUON_REQUIRE_NETNS=1): cannot run: {reason}", flush=True)
        sys.exit(1)
    print(f"SKIP: {reason}", flush=True)
    sys.exit(0)


# A child dies with this process even when it is SIGKILLed (PR_SET_PDEATHSIG): a trainer must not
# outlive the test in a namespace nobody removes.
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    _libc = None


def _die_with_parent():
    if _libc is not None:
        _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def popen(args, env, **kw):
    p = subprocess.Popen(args, env=env, preexec_fn=_die_with_parent, **kw)
    children.append(p)
    return p


# --- prerequisites and the two hosts -------------------------------------------------------------

if os.geteuid() != 0:
    skip(f"network namespaces need root (running as uid {os.geteuid()})")
if not shutil.which("ip"):
    skip("no `ip` command (iproute2) on PATH")
if not os.access(BIN, os.X_OK):
    print(f"FAIL: {BIN} is not an executable", flush=True)
    sys.exit(1)

# Namespaces a SIGKILLed earlier run left behind (its PID no longer exists).
r = sh("ip", "netns", "list")
for line in r.stdout.splitlines():
    m = re.match(r"(limuon-h[01]-(\d+))\b", line)
    if m and not os.path.exists(f"/proc/{m.group(2)}"):
        log(f"removing namespace {m.group(1)}, left by an earlier run")
        sh("ip", "netns", "del", m.group(1))
for d in os.listdir(tempfile.gettempdir()):
    m = re.fullmatch(r"limuon-netns-test-(\d+)-\w+", d)
    if m and not os.path.exists(f"/proc/{m.group(1)}"):
        log(f"removing {d}, left by an earlier run")
        shutil.rmtree(os.path.join(tempfile.gettempdir(), d), ignore_errors=True)

r = sh("ip", "netns", "add", NS[0])
if r.returncode != 0:
    skip(f"`ip netns add {NS[0]}` failed: {r.stderr.strip() or r.stdout.strip()} (rc {r.returncode})")
r = sh("ip", "netns", "add", NS[1])
if r.returncode != 0:
    cleanup()
    skip(f"`ip netns add {NS[1]}` failed: {r.stderr.strip()} (rc {r.returncode})")
r = sh("ip", "link", "add", VETH[0], "netns", NS[0], "type", "veth", "peer", "name", VETH[1], "netns", NS[1])
if r.returncode != 0:
    cleanup()
    skip(f"cannot create a veth pair between namespaces: {r.stderr.strip()} (rc {r.returncode})")

TMP = tempfile.mkdtemp(prefix=f"limuon-netns-test-{PID}-")
setup_err = ""
for i in (0, 1):
    for cmd in (["ip", "-n", NS[i], "link", "set", "lo", "up"],
                ["ip", "-n", NS[i], "addr", "add", f"{ADDR[i]}/24", "dev", VETH[i]],
                ["ip", "-n", NS[i], "link", "set", VETH[i], "up"]):
        r = sh(*cmd)
        if r.returncode != 0:
            setup_err += f"`{' '.join(cmd)}`: {r.stderr.strip()}\n"
if setup_err:
    print("FAIL: configuring the namespaces:\n" + setup_err, flush=True)
    sys.exit(1)
log(f"hosts: {NS[0]} ({VETH[0]} {ADDR[0]}) <-> {NS[1]} ({VETH[1]} {ADDR[1]})")

CLEAN_ENV = {k: v for k, v in os.environ.items()
             if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "GLOO_SOCKET_IFNAME")}


def ns_run(i, args, timeout=20):
    return subprocess.run(["ip", "netns", "exec", NS[i]] + args, capture_output=True, text=True, timeout=timeout, env=CLEAN_ENV)


# Reachability before any training: ping if there is one, else a TCP connection from h1 to h0.
deadline = time.time() + 10  # the veth link can take a moment to come up (carrier, DAD)
while True:
    if shutil.which("ping"):
        r = ns_run(1, ["ping", "-c1", "-W1", ADDR[0]])
        reach, how = r.returncode == 0, "ping"
    else:
        srv = popen(["ip", "netns", "exec", NS[0], sys.executable, "-c",
                     "import socket,sys\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                     f"s.bind(('{ADDR[0]}',{PORT + 2}))\ns.listen(1)\nprint('ready',flush=True)\ns.settimeout(5)\n"
                     "c,_=s.accept()\nc.sendall(b'hi')\nc.close()"], env=CLEAN_ENV, stdout=subprocess.PIPE, text=True)
        srv.stdout.readline()
        r = ns_run(1, [sys.executable, "-c", f"import socket\nc=socket.create_connection(('{ADDR[0]}',{PORT + 2}),2)\n"
                                             "assert c.recv(2)==b'hi'"])
        try:
            srv.wait(timeout=6)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
        reach, how = r.returncode == 0, "TCP connect"
    if reach or time.time() > deadline:
        break
    time.sleep(0.2)
if not check(f"h1 reaches h0 over the veth link ({how})", reach, r.stderr[-500:] + r.stdout[-300:]):
    for f in failures:
        print("FAIL", f)
    sys.exit(1)

# --- the training runs ---------------------------------------------------------------------------

text = "".join(f"Row {i}: pack my box with five dozen liquor jugs, {i * 5 % 11} of them.\n" for i in range(400))
corpus = os.path.join(TMP, "corpus.txt")
with open(corpus, "w") as f:
    f.write(text)

BASE = [BIN, "train", "--task", "lm", "--model", "gpt2-tiny", "--data", corpus, "--batch-size", "4",
        "--block-size", "32", "--eval-interval", "100", "--eval-batches", "1", "--dropout", "0", "--progress", "lines",
        "--seed", "3", "--adamw-lr", "0.003", "--warmup", "1", "--threads", "1", "--optimizer", "muon", "--lr", "0.02"] + EXTRA


from dist_common import with_flag  # noqa: E402  (tests/ is on sys.path: the script's folder)


def rank_env(rank, port):
    return dict(CLEAN_ENV, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0", MASTER_ADDR=ADDR[0], MASTER_PORT=str(port),
                GLOO_SOCKET_IFNAME=VETH[rank])


def start_rank(rank, args, port, stdout_path, stderr_path):
    log(f"rank {rank}: ip netns exec {NS[rank]} env RANK={rank} WORLD_SIZE=2 MASTER_ADDR={ADDR[0]} MASTER_PORT={port} "
        f"GLOO_SOCKET_IFNAME={VETH[rank]} {shlex.join(args[:2])} ... {shlex.join(args[-8:])}")
    return popen(["ip", "netns", "exec", NS[rank]] + args, env=rank_env(rank, port),
                 stdout=open(stdout_path, "w"), stderr=open(stderr_path, "w"))


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def ckpts(d):
    return sorted(f for f in os.listdir(d) if re.fullmatch(r"ckpt_\d{8}\.pt", f)) if os.path.isdir(d) else []


def link_bytes(i):
    r = sh("ip", "-n", NS[i], "-s", "-j", "link", "show", "dev", VETH[i])
    try:
        s = json.loads(r.stdout)[0]["stats64"]
        return s["tx"]["bytes"], s["rx"]["bytes"]
    except (ValueError, KeyError, IndexError):
        return None


def nonfinite_weights(path):
    """Names of the tensors in a safetensors file holding NaN or Inf (None: unreadable)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    bad = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw, dt = data[a:b], info["dtype"]
        if dt in ("F32", "F64"):
            ok = all(math.isfinite(x) for x in array.array("f" if dt == "F32" else "d", raw))
        elif dt in ("F16", "BF16"):  # exponent all ones: Inf or NaN
            mask = 0x7C00 if dt == "F16" else 0x7F80
            ok = all(x & mask != mask for x in array.array("H", raw))
        else:
            ok = True
        if not ok:
            bad.append(name)
    return bad


def losses(d):
    out = []
    for line in read(os.path.join(d, "metrics.jsonl")).splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if "loss" in row:
            out.append(row["loss"])
    return out


if EXTRA:
    log(f"extra train flags (LIMUON_NETNS_EXTRA): {shlex.join(EXTRA)}")

# A: two hosts train.
log(f"scenario A: 2 ranks, {STEPS_A} steps, over {VETH[0]}/{VETH[1]}")
a = [os.path.join(TMP, f"a-rank{i}") for i in (0, 1)]
before = link_bytes(0)
t = time.time()
procs = [start_rank(i, with_flag(BASE, "--steps", str(STEPS_A)) + ["--out", a[i]], PORT, os.path.join(TMP, f"a{i}.out"),
                    os.path.join(TMP, f"a{i}.err")) for i in (0, 1)]
rcs = []
for p in procs:
    try:
        rcs.append(p.wait(timeout=120))
    except subprocess.TimeoutExpired:
        p.kill()
        rcs.append(p.wait())
log(f"scenario A: exit codes {rcs} after {time.time() - t:.1f} s")
after = link_bytes(0)
err_a = [read(os.path.join(TMP, f"a{i}.err")) for i in (0, 1)]
if check("A: both ranks exit 0", rcs == [0, 0], f"rc={rcs}\nrank 0: {err_a[0][-700:]}\nrank 1: {err_a[1][-700:]}"):
    try:
        summary = json.load(open(os.path.join(a[0], "summary.json")))
    except (OSError, ValueError) as e:
        summary = {"error": str(e)}
    dp = summary.get("data_parallel", {})
    # Unsharded: gradients all-reduced; --shard-state: reduce-scattered (and weights all-gathered).
    key = "reduce_scatter_bytes" if dp.get("sharded_state") else "allreduce_bytes"
    check(f"A: rank 0's summary reports data_parallel world_size 2 and gradient traffic ({key})",
          dp.get("world_size") == 2 and dp.get(key, 0) > 0, dp or summary)
    if before and after:
        tx, rx = after[0] - before[0], after[1] - before[1]
        log(f"scenario A: {VETH[0]} sent {tx} B, received {rx} B; summary {key} {dp.get(key)}")
        check(f"A: the gradient traffic crossed the veth link (each way >= half of {key})",
              min(tx, rx) >= dp.get(key, 0) / 2, (tx, rx, dp.get(key)))
        sent = dp.get("ranks", [{}])[0].get("wire_bytes_sent", 0)
        log(f"scenario A: rank 0 measured {sent} B written to its sockets (/proc/self/io), the veth counted {tx} B out")
        # The link also carries TCP/IP headers and the rendezvous store's messages (measured 1.6 % here).
        check("A: the bytes rank 0 measured as sent are within 15% of what the veth link carried out of it",
              sent > 0 and abs(tx - sent) <= 0.15 * tx, (sent, tx))
    ls = losses(a[0])
    check(f"A: one loss per step from rank 0, going down ({ls[0] if ls else '-'} -> {ls[-1] if ls else '-'})",
          len(ls) == STEPS_A and all(math.isfinite(x) for x in ls) and ls[-1] < ls[0], ls)
    weights = os.path.join(a[0], "model.safetensors")
    try:
        bad = nonfinite_weights(weights)
    except (OSError, ValueError, struct.error) as e:
        bad = [f"unreadable: {e}"]
    check("A: final weights exist and are finite", not bad, bad)
    check("A: rank 1 writes no checkpoints, metrics or weights",
          not any(os.path.exists(os.path.join(a[1], f)) for f in ("metrics.jsonl", "summary.json", "model.safetensors"))
          and not ckpts(a[1]), os.listdir(a[1]) if os.path.isdir(a[1]) else "")

# B: the link is cut mid-run.
log(f"scenario B: 2 ranks, {STEPS_B} steps, checkpoint every 2, --dist-timeout {DIST_TIMEOUT}; cut the link after 2 checkpoints")
b = [os.path.join(TMP, f"b-rank{i}") for i in (0, 1)]
long_run = with_flag(BASE, "--steps", str(STEPS_B)) + ["--checkpoint-interval", "2", "--dist-timeout", str(DIST_TIMEOUT)]
procs = [start_rank(i, long_run + ["--out", b[i]], PORT + 1, os.path.join(TMP, f"b{i}.out"), os.path.join(TMP, f"b{i}.err"))
         for i in (0, 1)]
t_start = time.time()
deadline = t_start + 60


def newest_step(d):
    return int(ckpts(d)[-1][5:13]) if ckpts(d) else 0


# Two checkpoints written (steps 2 and 4; by then --keep may have rotated the first out).
while time.time() < deadline and all(p.poll() is None for p in procs) and newest_step(b[0]) < 4:
    time.sleep(0.05)
running = [p.poll() is None for p in procs]
cut_ok = False
if check("B: both ranks still running when 2 checkpoints were written", all(running) and newest_step(b[0]) >= 4,
         f"running={running} ckpts={ckpts(b[0])} rank 0: {read(os.path.join(TMP, 'b0.err'))[-600:]}"):
    r = sh("ip", "-n", NS[1], "link", "set", VETH[1], "down")
    t_cut = time.time()
    cut_ok = check(f"B: link cut ({NS[1]}: ip link set {VETH[1]} down) {t_cut - t_start:.1f} s into the run, "
                   f"after {ckpts(b[0])[-1]}", r.returncode == 0, r.stderr)
if cut_ok:
    exited = [None, None]
    while time.time() < t_cut + HARD_LIMIT and None in exited:
        for i, p in enumerate(procs):
            if exited[i] is None and p.poll() is not None:
                exited[i] = time.time() - t_cut
                log(f"scenario B: rank {i} exited with {p.returncode}, {exited[i]:.1f} s after the cut")
        time.sleep(0.05)
    for i, p in enumerate(procs):
        if p.poll() is None:
            log(f"scenario B: rank {i} still running {HARD_LIMIT} s after the cut: killing it")
            p.kill()
            p.wait()
    err_b = [read(os.path.join(TMP, f"b{i}.err")) for i in (0, 1)]
    # Without the progress lines: the warnings and the error.
    msgs = ["\n".join(l for l in e.splitlines() if not l.startswith(("step ", "checkpoint "))) for e in err_b]
    for i in (0, 1):
        log(f"scenario B: rank {i} stderr (progress lines left out):\n" + "\n".join("    | " + l for l in msgs[i][-1200:].splitlines()))
    check("B: rank 0 (the survivor) does not hang", exited[0] is not None, f"still running {HARD_LIMIT} s after the cut")
    if exited[0] is not None:
        check("B: rank 0 exits non-zero", procs[0].returncode != 0, procs[0].returncode)
        check(f"B: rank 0 notices within --dist-timeout {DIST_TIMEOUT} s + 30 s (took {exited[0]:.1f} s)",
              exited[0] < DETECT_LIMIT, exited[0])
        check("B: rank 0's error says a collective failed", "data-parallel" in msgs[0] and "failed" in msgs[0], msgs[0][-800:])
        check(f"B: rank 0's error names the lost peer ('rank 1' or {ADDR[1]})",
              "rank 1" in msgs[0] or ADDR[1] in msgs[0], msgs[0][-800:])
    check("B: rank 1 (cut off) exits by itself, non-zero", exited[1] is not None and procs[1].returncode != 0,
          f"exited after {exited[1]} s, rc {procs[1].returncode}")
    check("B: rank 1 writes no checkpoints", not ckpts(b[1]), ckpts(b[1]))
else:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()

# Every checkpoint rank 0 left is complete and resumes on one process; the newest carries the run
# to its end in rank 0's own directory.
left = ckpts(b[0])
log(f"scenario B: checkpoints left in rank 0's directory: {left}")
if check("B: rank 0 left checkpoints", len(left) >= 1, left):
    for c in left:
        try:
            with zipfile.ZipFile(os.path.join(b[0], c)) as z:
                bad = z.testzip()
        except (OSError, zipfile.BadZipFile) as e:
            bad = str(e)
        check(f"B: {c} is a complete archive", bad is None, bad)
    for c in left[:-1]:  # the older ones: each on its own, one step on
        scratch = os.path.join(TMP, "resume-" + c)
        os.makedirs(scratch)
        shutil.copy(os.path.join(b[0], c), scratch)
        step = int(c[5:13])
        r = subprocess.run(with_flag(long_run, "--steps", str(step + 1)) + ["--out", scratch, "--resume"],
                           capture_output=True, text=True, timeout=60, env=CLEAN_ENV)
        check(f"B: {c} resumes on 1 process", r.returncode == 0 and "resumed from" in r.stderr,
              f"rc={r.returncode} {r.stderr[-600:]}")
    t = time.time()
    r = subprocess.run(long_run + ["--out", b[0], "--resume"], capture_output=True, text=True, timeout=120, env=CLEAN_ENV)
    m = re.search(r"resumed from \S+ at step \d+", r.stderr)
    log(f"scenario B: 1-process resume in {b[0]}: rc {r.returncode}, {time.time() - t:.1f} s, "
        f"{m.group(0) if m else 'no resume line'}")
    if check(f"B: the newest checkpoint ({left[-1]}) resumes on 1 process and finishes the run",
             r.returncode == 0 and m is not None and left[-1] in m.group(0), f"rc={r.returncode} {r.stderr[-800:]}"):
        ls = losses(b[0])
        try:
            s = json.load(open(os.path.join(b[0], "summary.json")))
        except (OSError, ValueError) as e:
            s = {"error": str(e)}
        check(f"B: resumed run reaches step {STEPS_B} with finite weights",
              s.get("steps") == STEPS_B and len(ls) == STEPS_B
              and not nonfinite_weights(os.path.join(b[0], "model.safetensors")),
              f"{len(ls)} loss rows, summary steps {s.get('steps')}")

cleanup()
left_ns = [ns for ns in NS if ns in sh("ip", "netns", "list").stdout]
left_if = [v for v in VETH if os.path.exists(f"/sys/class/net/{v}")]
check("namespaces and veths removed", not left_ns and not left_if, (left_ns, left_if))
print(f"{time.time() - T0:.0f}s")
for f in failures:
    print("FAIL", f)
print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
