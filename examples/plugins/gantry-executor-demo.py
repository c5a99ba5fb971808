#!/usr/bin/env python3
"""gantry-executor-demo: a minimal gantry executor plugin (protocol 1), Python 3 stdlib only.

It pretends to deploy: it remembers, per target, the version deployed, the migrations applied
and the snapshots taken, so `observe` and `health` answer consistently. Use it to try gantry
without a cluster, or as the skeleton of a real plugin (replace `handle_*` with kubectl/helm).

    [executors.demo]
    type = "plugin"
    command = ["examples/plugins/gantry-executor-demo.py", "--state", "/tmp/gantry-demo.json"]

Protocol (one JSON object per line; see gantry's SPEC §5):
    -> {"id":1,"op":"hello","protocol":1}
    <- {"id":1,"ok":true,"ops":["deploy",...]}
    -> {"id":2,"op":"deploy","target":{"name":...},"component":...,"version":...,"step":{"argv":[...]}}
    <- {"id":2,"ok":true,"message":"...","observed_version":"2.0.0"}

Options:
    --state FILE           keep what was deployed in FILE across restarts (default: in memory only)
    --state-in-repo PATH   the same, in PATH under the repository gantry watches (the `GANTRY_REPO`
                           each request carries in `step.env`); `gantry init`'s demo uses
                           `deployed/storefront.json`, beside what its shell scripts deploy

A target var `demo_fail` naming an op (e.g. `vars: {demo_fail: health}`) makes that op fail,
to try rollbacks; `demo_delay` (seconds) makes every deploy take that long, to watch targets
deploy side by side; `demo_fail_weight` (e.g. 25) makes health checks fail while that share of
traffic goes to the new version (`shift` op), to try traffic rollbacks. Diagnostics go to stderr, which gantry appends to the step's log.

gantry runs one copy of this plugin per step running at once (up to the policy's maxParallel),
so the state file is locked while a request reads and writes it.
"""

import fcntl
import json
import os
import sys
import time

PROTOCOL = 1
OPS = [
    "deploy", "health", "snapshot", "restore", "reload",
    "observe", "remove", "migrate_up", "migrate_down", "precheck", "shift",
]


def log(msg):
    print(f"demo: {msg}", file=sys.stderr, flush=True)


class State:
    """What was deployed, per target; with a file, shared by every copy of the plugin."""

    def __init__(self, path):
        self.path = path
        self.targets = {}
        self.lock = None

    def __enter__(self):
        if self.path:
            self.lock = open(self.path + ".lock", "a", encoding="utf-8")
            fcntl.flock(self.lock, fcntl.LOCK_EX)
            if os.path.exists(self.path):
                with open(self.path, encoding="utf-8") as f:
                    self.targets = json.load(f)
        return self

    def __exit__(self, *exc):
        if self.lock:
            self.lock.close()
            self.lock = None

    def target(self, name):
        return self.targets.setdefault(
            name, {"version": None, "migrations": [], "snapshots": {}})

    def save(self):
        if not self.path:
            return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.targets, f, indent=2, sort_keys=True)
        os.replace(tmp, self.path)


def handle(state, req):
    """Returns (ok, message, observed_version) for one step request."""
    op = req["op"]
    target = req["target"]
    name = target["name"]
    version = req.get("version")
    argv = " ".join(req.get("step", {}).get("argv", []))
    t = state.target(name)
    log(f"{op} {name} {version or ''} {argv}".rstrip())

    if target.get("vars", {}).get("demo_fail") == op:
        return False, f"{op} failed on {name}: requested by vars.demo_fail", t["version"]

    if op == "deploy":
        t["version"] = version
        detail = f" ({argv})" if argv else ""
        return True, f"deployed {req['component']} {version} to {name}{detail}", version
    if op == "shift":
        weight = req.get("weight")
        t["weight"] = weight
        t.setdefault("shifts", []).append(weight)
        return True, f"{name}: {weight}% of traffic to {version}", t["version"]
    if op == "health":
        fail_at = target.get("vars", {}).get("demo_fail_weight")
        if fail_at is not None and t.get("weight") == fail_at:
            return False, f"{name}: errors at {fail_at}% of traffic (demo_fail_weight)", t["version"]
        if t["version"] != version:
            return False, f"{name} runs {t['version']}, expected {version}", t["version"]
        return True, f"{name} healthy at {version}", version
    if op == "precheck":
        return True, f"{name} is ready for {version}", t["version"]
    if op == "observe":
        return True, f"{name} runs {t['version']}", t["version"]
    if op == "snapshot":
        t["snapshots"][req["attempt"]] = {"version": t["version"], "migrations": list(t["migrations"])}
        return True, f"snapshot {req['attempt']} of {name}", t["version"]
    if op == "restore":
        snap = t["snapshots"].get(req["attempt"])
        if snap is None:
            return False, f"no snapshot {req['attempt']} for {name}", t["version"]
        t["version"], t["migrations"] = snap["version"], list(snap["migrations"])
        return True, f"restored {name} from snapshot {req['attempt']}", t["version"]
    if op == "reload":
        return True, f"reloaded config of {name}", t["version"]
    if op == "remove":
        state.targets.pop(name, None)
        return True, f"removed {name}", None
    if op in ("migrate_up", "migrate_down"):
        mid = f"{req.get('release')}/{req.get('migration')}"
        if op == "migrate_up" and mid not in t["migrations"]:
            t["migrations"].append(mid)
        if op == "migrate_down" and mid in t["migrations"]:
            t["migrations"].remove(mid)
        return True, f"{op} {mid} on {name}", t["version"]
    return False, f"unknown op {op!r}", t["version"]


def state_for(req, state, in_repo):
    """The state a request works on: `state`, or the file `in_repo` under its GANTRY_REPO."""
    if in_repo is None:
        return state
    repo = req.get("step", {}).get("env", {}).get("GANTRY_REPO")
    if not repo:
        raise ValueError("--state-in-repo needs GANTRY_REPO in the request's step.env")
    path = os.path.join(repo, in_repo)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return State(path)


def main(args):
    state_path = in_repo = None
    if len(args) == 2 and args[0] == "--state":
        state_path = args[1]
    elif len(args) == 2 and args[0] == "--state-in-repo":
        in_repo = args[1]
    elif args:
        print("usage: gantry-executor-demo.py [--state FILE | --state-in-repo PATH]", file=sys.stderr)
        return 2
    state = State(state_path)

    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        rid = req.get("id")
        if req.get("op") == "hello":
            if req.get("protocol") != PROTOCOL:
                reply = {"id": rid, "ok": False, "message": f"speaks protocol {PROTOCOL} only"}
            else:
                reply = {"id": rid, "ok": True, "ops": OPS}
        else:
            try:
                delay = req.get("target", {}).get("vars", {}).get("demo_delay")
                started = time.time()
                if req.get("op") == "deploy" and delay:
                    # Outside the lock: copies of the plugin deploy side by side.
                    time.sleep(float(delay))
                with state_for(req, state, in_repo) as current:
                    ok, message, observed = handle(current, req)
                    if req.get("op") == "deploy" and ok:
                        current.target(req["target"]["name"])["last_deploy"] = {
                            "started": started, "finished": time.time()}
                    current.save()
            except (KeyError, TypeError, ValueError, OSError) as e:
                ok, message, observed = False, f"demo plugin error: {e!r}", None
            reply = {"id": rid, "ok": ok, "message": message, "observed_version": observed}
        print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
