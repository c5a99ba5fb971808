#!/usr/bin/env python3
"""Simulated agent instances, driven by gantry's shell executor (python3 stdlib only).

Each instance is a JSON file, instances/<instance>.json, under the repository gantry watches
($GANTRY_REPO): the version serving the requests (`live`), a new version started beside it
(`candidate`) with the share of requests it takes (`weight`), the config it runs with, and every
operation gantry asked for (`events`), so you can see what a pass did.

    agent.py deploy INSTANCE VERSION CONFIG_JSON   start VERSION beside the live one (no traffic)
    agent.py shift INSTANCE WEIGHT                 send WEIGHT % of the requests to the candidate
    agent.py error-rate INSTANCE MAX               something runs, and its requests' error rate
                                                   is at most MAX (the policy's health check)
    agent.py reload INSTANCE CONFIG_JSON           apply a config change without a restart
    agent.py observe INSTANCE                      print the version serving all the requests

The error rate of a build comes from simulate/error-rates (in the commit gantry applies).
"""

import json
import os
import sys

INSTANCES = os.path.join(os.environ.get("GANTRY_REPO", "."), "instances")
DEFAULT_RATE = 0.005


def load(instance):
    path = os.path.join(INSTANCES, instance + ".json")
    if not os.path.exists(path):
        return {"live": None, "candidate": None, "weight": 0, "config": {}, "events": []}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save(instance, state):
    os.makedirs(INSTANCES, exist_ok=True)
    path = os.path.join(INSTANCES, instance + ".json")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(path + ".tmp", path)


def serving(state):
    """The version that takes all the requests once no shift is in progress."""
    if state["candidate"] and state["weight"] == 100:
        return state["candidate"]
    return state["live"]


def downgrade():
    """Whether this attempt goes to a lower version than it started from."""
    def parse(v):
        return tuple(int(p) for p in v.split("."))
    start, end = os.environ.get("GANTRY_FROM", ""), os.environ.get("GANTRY_TO", "")
    return bool(start and end) and parse(end) < parse(start)


def error_rates():
    rates = {}
    with open("simulate/error-rates", encoding="utf-8") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if len(words) == 3:
                rates[(words[0], words[1])] = float(words[2])
    return rates


def main(argv):
    op, instance = argv[1], argv[2]
    state = load(instance)
    component = os.environ.get("GANTRY_COMPONENT", "agent")
    if op == "deploy":
        version, config = argv[3], json.loads(argv[4])
        current = serving(state)
        if version in (current, state["live"]):
            # Back to a version still running (a rollback, a redeploy): it takes every request.
            state.update(live=version, candidate=None, weight=0)
        elif downgrade():
            # gantry moves no traffic in steps for a downgrade: the old version takes over.
            state.update(live=version, candidate=None, weight=0)
        else:
            # Blue-green: the one serving now stays live beside the new one until the shifts.
            state.update(live=current, candidate=version, weight=0)
        state["config"] = config
        state["events"].append(f"deploy {version}")
        print(f"{instance}: started {component} {version} beside {current or 'nothing'}")
    elif op == "shift":
        weight = int(argv[3])
        state["weight"] = weight
        state["events"].append(f"shift {weight}")
        print(f"{instance}: {weight}% of requests on {state['candidate'] or state['live']}")
    elif op == "reload":
        state["config"] = json.loads(argv[3])
        state["events"].append("reload")
        print(f"{instance}: config reloaded without a restart: {json.dumps(state['config'])}")
    elif op == "error-rate":
        limit = float(argv[3])
        if state["live"] is None and state["candidate"] is None:
            print(f"{instance}: nothing is running")
            return 1
        rates = error_rates()
        weight = state["weight"] / 100 if state["candidate"] else 0.0
        rate = 0.0
        if state["live"]:
            rate += (1 - weight) * rates.get((component, state["live"]), DEFAULT_RATE)
        if state["candidate"]:
            rate += weight * rates.get((component, state["candidate"]), DEFAULT_RATE)
        print(f"{instance}: error rate {rate:.2%} (limit {limit:.2%})")
        return 0 if rate <= limit else 1
    elif op == "observe":
        print(serving(state) or "")
        return 0
    else:
        print(f"unknown operation {op}", file=sys.stderr)
        return 2
    save(instance, state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
