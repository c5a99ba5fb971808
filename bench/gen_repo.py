#!/usr/bin/env python3
"""Deterministic generator of a large gantry repository, for bench/plan_10k.sh.

Writes a `git fast-import` stream to stdout (python3 stdlib only; no randomness beyond a seeded
PRNG, fixed author dates), so the same arguments always give the same commit ids:

  refs/heads/main          5 commits: the fleet, then version bumps of slices of targets with
                           `Approved-by:` trailers (so approval evidence walks real history)
  refs/heads/gantry/state  one commit with `targets/<name>.yaml` records (TargetRecord), so the
                           plan has upgrades, config changes and converged targets, not only installs

With `--history N` (bench/status_history.sh), N more commits on main after those, each editing
one target's config (not its version), round robin, so the approvals walk must read all of them
to settle the targets no bump touched; with `--state-history M`, the state branch is M outcome
commits (one target's record each, with Gantry-* trailers) ending at the same records.

Usage: gen_repo.py [--targets N] [--releases N] [--layout per-target|multi]
                   [--history N] [--state-history M] | git fast-import
"""

import argparse
import hashlib
import json
import random
import sys

COMPONENTS = ["ledger", "billing", "auth", "search", "notify"]
DEPENDS = {"billing": ["ledger"], "notify": ["auth"], "search": ["auth"]}
REGIONS = ["eu", "us", "ap"]
EPOCH = 1_780_000_000  # fixed author/committer time (2026-05-28), so commit ids are stable


def versions_for(count):
    """`count` versions: 1.0.0, 1.0.1, 1.1.0, 1.1.1, ... then 2.x the same way."""
    per_major = max(count // 2, 1)
    out = []
    for major in (1, 2, 3, 4):
        for i in range(per_major):
            out.append((major, i // 2, i % 2))
            if len(out) == count:
                return out
    return out


def vstr(v):
    return "%d.%d.%d" % v


def release_docs(component, versions):
    docs = []
    first_major2 = next((v for v in versions if v[0] == 2), None)
    last_major1 = max((v for v in versions if v[0] == 1), default=None)
    for n, v in enumerate(versions):
        month = 1 + n * 10 // len(versions)
        day = 1 + (n * 7) % 27
        lines = [
            "apiVersion: gantry.dev/v1",
            "kind: Release",
            "metadata: { name: %s-%s }" % (component, vstr(v)),
            "spec:",
            "  component: %s" % component,
            "  version: %s" % vstr(v),
            "  released: 2026-%02d-%02d" % (month, day),
        ]
        if v == first_major2 and last_major1 is not None:
            # A major can only be reached from the last minor of 1.x: multi-hop paths.
            lines.append('  upgradeFrom: ">=%d.%d.0"' % (last_major1[0], last_major1[1]))
            lines.append("  breaking: true")
        if v[2] == 0 and v != (1, 0, 0):
            mid = "m%d%d" % (v[0], v[1])
            lines += [
                "  migrations:",
                "    - id: %s-schema" % mid,
                '      up:   ["migrations/%s/migrate.sh", "up", "%s-schema", "{{ target.name }}"]' % (component, mid),
                '      down: ["migrations/%s/migrate.sh", "down", "%s-schema", "{{ target.name }}"]' % (component, mid),
            ]
            if v[1] % 2 == 1:
                lines += [
                    "    - id: %s-backfill" % mid,
                    "      phase: post",
                    '      up:   ["migrations/%s/backfill.sh", "{{ target.name }}", "{{ version }}"]' % component,
                ]
        lines += ["  changelog:", '    added: ["feature %s"]' % vstr(v)]
        docs.append("\n".join(lines) + "\n")
    return docs


def component_doc(component):
    deps = DEPENDS.get(component)
    lines = [
        "apiVersion: gantry.dev/v1",
        "kind: Component",
        "metadata:",
        "  name: %s" % component,
        "  labels: { team: team-%s }" % component,
        "spec:",
        "  executor: local",
    ]
    if deps:
        lines.append("  dependsOn: [%s]" % ", ".join(deps))
    lines += [
        "  steps:",
        '    deploy:   ["scripts/deploy.sh", "{{ target.name }}", "{{ version }}"]',
        '    health:   ["scripts/health.sh", "{{ target.name }}"]',
        '    snapshot: ["scripts/snapshot.sh", "{{ target.name }}", "{{ attempt }}"]',
        '    restore:  ["scripts/restore.sh", "{{ target.name }}", "{{ attempt }}"]',
        '    reload:   ["scripts/reload.sh", "{{ target.name }}"]',
    ]
    return "\n".join(lines) + "\n"


POLICIES = [
    """apiVersion: gantry.dev/v1
kind: Policy
metadata: { name: production }
spec:
  selector: { env: prod }
  priority: 10
  updates:
    patch: { approvals: 0, windows: false }
    minor: { approvals: 0 }
    major: { approvals: 2, approvers: [alice@example.com, bob@example.com, carol@example.com], minReleaseAge: 7d }
  deny: ["2.2.1"]
  rollout:
    waves:
      - { name: canary, selector: { ring: "0" }, soak: 30m }
      - { name: early, percent: 25, soak: 1h }
      - { name: all, percent: 100 }
    maxParallel: 20
    maxFailures: 2
  health:
    checks:
      - { name: http, type: http, url: "http://{{ target.name }}.internal/health", expect: 200, timeout: 5s }
      - { name: smoke, type: command, argv: ["scripts/smoke.sh", "{{ target.name }}"], timeout: 30s }
    interval: 10s
    soak: 2m
    failureThreshold: 3
  stepTimeout: 10m
  autoRollback: true
  rollback: { respectWindows: false }
  keepRollbackPoints: 5
""",
    """apiVersion: gantry.dev/v1
kind: Policy
metadata: { name: staging }
spec:
  selector: { env: staging }
  priority: 5
  updates:
    major: { approvals: 1, approvers: [alice@example.com, dave@example.com] }
  rollout:
    waves:
      - { name: canary, selector: { ring: "0" }, soak: 10m }
      - { name: half, percent: 50, soak: 30m }
      - { name: all, percent: 100 }
    maxParallel: 50
    maxFailures: 5
  health:
    interval: 5s
    soak: 1m
  stepTimeout: 5m
""",
    """apiVersion: gantry.dev/v1
kind: Policy
metadata: { name: fleet-default }
spec:
  priority: 0
  updates:
    patch: { windows: false }
  rollout:
    waves:
      - { name: first, percent: 10, soak: 5m }
      - { name: all, percent: 100 }
    maxParallel: 100
  stepTimeout: 5m
""",
]

WINDOWS = [
    """apiVersion: gantry.dev/v1
kind: Window
metadata: { name: eu-nights }
spec:
  selector: { region: eu }
  timezone: Europe/Berlin
  allow:
    - { days: [mon, tue, wed, thu], start: "22:00", end: "05:00" }
    - { days: [sat, sun], start: "02:00", end: "08:00" }
  deny:
    - { days: [fri], start: "12:00", end: "23:59" }
""",
    """apiVersion: gantry.dev/v1
kind: Window
metadata: { name: us-nights }
spec:
  selector: { region: us }
  timezone: America/New_York
  allow:
    - { days: [mon, tue, wed, thu, fri], start: "23:00", end: "04:00" }
  deny:
    - { from: "2026-11-26T00:00", to: "2026-11-30T23:59" }
""",
    """apiVersion: gantry.dev/v1
kind: Window
metadata: { name: ap-mornings }
spec:
  selector: { region: ap }
  timezone: Asia/Tokyo
  allow:
    - { days: [tue, wed, thu], start: "03:00", end: "07:00" }
  deny:
    - { dates: [2026-12-29, 2026-12-30, 2026-12-31, 2027-01-01, 2027-01-02, 2027-01-03] }
""",
    """apiVersion: gantry.dev/v1
kind: Window
metadata: { name: staging-office-hours }
spec:
  selector: { env: staging }
  timezone: UTC
  allow:
    - { days: [mon, tue, wed, thu, fri], start: "08:00", end: "18:00" }
  deny:
    - { start: "12:00", end: "13:00" }
""",
    """apiVersion: gantry.dev/v1
kind: Window
metadata: { name: year-end-freeze }
spec:
  timezone: Europe/London
  deny:
    - { dates: [2026-12-24, 2026-12-25, 2026-12-26, 2026-12-31, 2027-01-01] }
    - { from: "2026-12-18T17:00", to: "2026-12-23T09:00" }
""",
]

GANTRY_TOML = """desired_branch = "main"
state_branch = "gantry/state"

[executors.local]
type = "shell"
"""


def config_hash(config):
    """sha256 of the canonical JSON (sorted keys, compact), as gantry computes it."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class Fleet:
    def __init__(self, n_targets, n_releases, seed):
        rng = random.Random(seed)
        per_component = max(n_releases // len(COMPONENTS), 2)
        self.versions = {c: versions_for(per_component) for c in COMPONENTS}
        n_tenants = (n_targets + len(COMPONENTS) - 1) // len(COMPONENTS)
        self.targets = []  # dicts: name, component, labels, version(text), config, vars
        for t in range(n_tenants):
            tenant = "tenant-%05d" % t
            env = "prod" if t % 10 < 7 else ("staging" if t % 10 < 9 else "dev")
            ring = "0" if t % 50 == 0 else str(1 + t % 3)
            region = REGIONS[t % len(REGIONS)]
            for c in COMPONENTS:
                if len(self.targets) == n_targets:
                    break
                versions = self.versions[c]
                majors1 = [v for v in versions if v[0] == 1]
                # Most follow a requirement on the newest 1.x line; some pin; some want 2.x.
                r = rng.random()
                if r < 0.55:
                    wanted = "^1.%d" % majors1[-1][1]
                elif r < 0.8:
                    wanted = vstr(majors1[rng.randrange(len(majors1) // 2, len(majors1))])
                else:
                    wanted = vstr(versions[-1])
                config = {"timeout_s": 30 + 10 * (t % 4), "replicas": 1 + t % 3}
                if c == "search":
                    config["index_shards"] = 4
                self.targets.append({
                    "name": "%s-%s" % (tenant, c),
                    "component": c,
                    "labels": {"tenant": tenant, "env": env, "ring": ring, "region": region},
                    "version": wanted,
                    "config": config,
                    "vars": {"host": "%s.%s.internal" % (tenant, region)},
                    # Recorded state: mostly behind (upgrades), some on the newest (converged or
                    # config change), a few never installed (installs).
                    "recorded": None if rng.random() < 0.03 else versions[rng.randrange(0, len(majors1))],
                    "stale_config": rng.random() < 0.1,
                })


def target_doc(t):
    labels = ", ".join('%s: "%s"' % (k, v) if k == "ring" else "%s: %s" % (k, v) for k, v in t["labels"].items())
    cfg = ", ".join("%s: %s" % (k, json.dumps(v)) for k, v in t["config"].items())
    return (
        "apiVersion: gantry.dev/v1\n"
        "kind: Target\n"
        "metadata:\n"
        "  name: %s\n"
        "  labels: { %s }\n"
        "spec:\n"
        "  component: %s\n"
        '  version: "%s"\n'
        "  config: { %s }\n"
        "  vars: { host: %s }\n" % (t["name"], labels, t["component"], t["version"], cfg, t["vars"]["host"])
    )


def record_doc(t):
    v = t["recorded"]
    config = dict(t["config"])
    if t["stale_config"]:
        config["timeout_s"] = 15
    lines = [
        "component: %s" % t["component"],
        "version: %s" % vstr(v),
        "config_hash: %s" % config_hash(config),
        # The config itself, as gantry records it next to its hash (reconcile::attempt).
        "config: %s" % json.dumps(config, sort_keys=True),
        "applied_migrations: []",
        "status: converged",
        "rollback_points: []",
    ]
    return "\n".join(lines) + "\n"


class Stream:
    def __init__(self, out):
        self.out = out
        self.mark = 0

    def blob(self, text):
        data = text.encode()
        self.mark += 1
        self.out.write(b"blob\nmark :%d\ndata %d\n" % (self.mark, len(data)))
        self.out.write(data)
        self.out.write(b"\n")
        return self.mark

    def commit(self, ref, message, files, parent=None, clear=False, when=EPOCH):
        """files: {path: mark}."""
        self.mark += 1
        msg = message.encode()
        who = b"Bench <bench@example.com> %d +0000" % when
        self.out.write(b"commit %s\nmark :%d\n" % (ref.encode(), self.mark))
        self.out.write(b"author " + who + b"\ncommitter " + who + b"\n")
        self.out.write(b"data %d\n" % len(msg) + msg + b"\n")
        if parent is not None:
            self.out.write(b"from :%d\n" % parent)
        if clear:
            self.out.write(b"deleteall\n")
        for path in sorted(files):
            self.out.write(b"M 100644 :%d %s\n" % (files[path], path.encode()))
        self.out.write(b"\n")
        return self.mark


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=10_000)
    ap.add_argument("--releases", type=int, default=100)
    ap.add_argument("--layout", choices=["per-target", "multi"], default="per-target",
                    help="per-target: targets/<tenant>/<name>.yaml; multi: 10 files of many documents")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--history", type=int, default=0,
                    help="extra commits on main, each a config edit of one target")
    ap.add_argument("--state-history", type=int, default=1,
                    help="commits on the state branch (outcome commits ending at the records)")
    args = ap.parse_args()

    fleet = Fleet(args.targets, args.releases, args.seed)
    s = Stream(sys.stdout.buffer)

    def target_files(targets):
        if args.layout == "per-target":
            return {"targets/%s/%s.yaml" % (t["labels"]["tenant"][:10], t["name"]): target_doc(t) for t in targets}
        chunks = {}
        for i, t in enumerate(targets):
            chunks.setdefault("targets/fleet-%02d.yaml" % (i * 10 // len(targets)), []).append(target_doc(t))
        return {p: "---\n".join(docs) for p, docs in chunks.items()}

    files = {"gantry.toml": s.blob(GANTRY_TOML), "README.md": s.blob("# Generated benchmark fleet\n")}
    for c in COMPONENTS:
        files["components/%s.yaml" % c] = s.blob(component_doc(c))
        files["releases/%s.yaml" % c] = s.blob("---\n".join(release_docs(c, fleet.versions[c])))
    for doc in POLICIES:
        name = doc.split("name: ", 1)[1].split(" ", 1)[0]
        files["policies/%s.yaml" % name] = s.blob(doc)
    for doc in WINDOWS:
        name = doc.split("name: ", 1)[1].split(" ", 1)[0]
        files["windows/%s.yaml" % name] = s.blob(doc)
    files["scripts/deploy.sh"] = s.blob("#!/bin/sh\nexit 0\n")
    texts = target_files(fleet.targets)
    for path, text in texts.items():
        files[path] = s.blob(text)
    head = s.commit("refs/heads/main", "Fleet of %d targets\n" % len(fleet.targets), files, clear=True, when=EPOCH)

    # Four bumps: a slice of prod billing/auth targets to the newest 2.x, approved in trailers.
    approvers = [["alice@example.com", "bob@example.com"], ["carol@example.com"], [], ["alice@example.com", "carol@example.com"]]
    for k, names in enumerate(approvers):
        changed = [t for i, t in enumerate(fleet.targets)
                   if t["labels"]["env"] == "prod" and i % 8 == 2 * k % 8 and t["component"] in ("billing", "auth")]
        for t in changed:
            t["version"] = vstr(fleet.versions[t["component"]][-1])
        new_texts = target_files(fleet.targets)
        delta = {p: s.blob(text) for p, text in new_texts.items() if texts.get(p) != text}
        texts = new_texts
        trailers = "".join("Approved-by: %s\n" % a for a in names)
        message = "Upgrade %d targets to 2.x (wave %d)\n\n%s" % (len(changed), k + 1, ("\n" + trailers) if trailers else "")
        head = s.commit("refs/heads/main", message, delta, parent=head, when=EPOCH + 3600 * (k + 1))

    for k in range(args.history):
        t = fleet.targets[k % len(fleet.targets)]
        t["config"]["replicas"] = 1 + (t["config"]["replicas"] + k) % 5
        if args.layout == "per-target":
            # Only this target's file changes: regenerate just that one.
            new_texts = dict(texts)
            new_texts.update(target_files([t]))
        else:
            new_texts = target_files(fleet.targets)
        delta = {p: s.blob(text) for p, text in new_texts.items() if texts.get(p) != text}
        texts = new_texts
        head = s.commit("refs/heads/main", "Scale %s to %d replicas\n" % (t["name"], t["config"]["replicas"]),
                        delta, parent=head, when=EPOCH + 3600 * 5 + 60 * k)

    records = {"targets/%s.yaml" % t["name"]: s.blob(record_doc(t)) for t in fleet.targets if t["recorded"] is not None}
    recorded = [t for t in fleet.targets if t["recorded"] is not None]
    state = None
    first = max(args.state_history - 1, 0)
    if first:
        state = s.commit("refs/heads/gantry/state", "gantry: recorded state\n", records, clear=True, when=EPOCH + 86400)
    for k in range(first):
        # One outcome per commit, as a pass recording one attempt writes it.
        t = recorded[k % len(recorded)]
        v = vstr(t["recorded"])
        trailers = ("Gantry-Target: %s\nGantry-Component: %s\nGantry-From: %s\nGantry-To: %s\n"
                    "Gantry-Outcome: succeeded\nGantry-Desired-Commit: %s\nGantry-Attempt: %s-%06d\n"
                    % (t["name"], t["component"], v, v, "0" * 40, t["name"], k))
        message = "%s %s → %s on %s: succeeded\n\n%s" % (t["component"], v, v, t["name"], trailers)
        path = "targets/%s.yaml" % t["name"]
        state = s.commit("refs/heads/gantry/state", message, {path: records[path]}, parent=state,
                         when=EPOCH + 86400 + 60 * (k + 1))
    if not first:
        s.commit("refs/heads/gantry/state", "gantry: recorded state\n", records, clear=True, when=EPOCH + 86400)
    s.out.write(b"done\n")


if __name__ == "__main__":
    main()
