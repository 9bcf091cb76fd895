#!/usr/bin/env python3
"""Checks Latchkey scenario files against scenarios/scenario.schema.json.

Usage: scenario_schema_check.py SCHEMA PATH...

Each PATH is a scenario file or a directory searched recursively for *.json
files (the schema itself is skipped). Every file is validated against the
schema and then given the cross-field checks that the schema cannot express
but sim/config.cc's ValidateConfig makes (latency order, usable lease,
schedule targets in range). Every error is printed as

    FILE: /json/pointer: message

Exit status: 0 when every file is valid, 1 when any file has an error, 2 when
the command line or the schema itself is wrong. Needs only the standard
library and python3-jsonschema.
"""

import json
import os
import sys

try:
    import jsonschema
except ImportError:  # pragma: no cover
    sys.stderr.write("scenario_schema_check: needs python3-jsonschema (apt-get install python3-jsonschema)\n")
    sys.exit(2)

# SimConfig defaults (sim/config.h), needed by the cross-field checks.
DEFAULTS = {
    "stores": 1,
    "servers": 2,
    "processes_per_server": 2,
    "lease_us": 1000000,
    "expiry_margin_us": 10000,
    "drift_ppm": 200,
    "latency_min_us": 200,
    "latency_max_us": 1000,
    "sessions": 8,
}


def pointer(parts):
    """A JSON Pointer (RFC 6901) for a path of keys and indices."""
    out = ""
    for part in parts:
        out += "/" + str(part).replace("~", "~0").replace("/", "~1")
    return out or "/"


def describe(error):
    """The validator's message, in plainer words for the rules written as `not`."""
    if error.validator == "not" and isinstance(error.validator_value, dict):
        required = error.validator_value.get("required")
        if required == ["seed", "seeds"]:
            return "give either seed or seeds, not both"
        if required == ["invariant"]:
            return "invariant is allowed only when outcome is \"violation\""
    if error.validator == "const" and list(error.absolute_path)[-2:] == ["seeds", "count"]:
        return "expect/trace_hash needs a single seed (seeds/count 1)"
    if error.validator == "oneOf" and isinstance(error.instance, str):
        return f"{error.instance!r} is neither a number of microseconds nor \"never\""
    return error.message


def scenario_files(paths, schema_path):
    schema_real = os.path.realpath(schema_path)
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(root, name)
                    if name.endswith(".json") and os.path.realpath(full) != schema_real:
                        yield full
        else:
            yield path


def cross_field_errors(scenario):
    """The constraints of ValidateConfig that a JSON Schema cannot state."""
    errors = []
    if not isinstance(scenario, dict):
        return errors

    def section(name):
        value = scenario.get(name, {})
        return value if isinstance(value, dict) else {}

    topology, timing, network = section("topology"), section("timing"), section("network")
    workload, faults = section("workload"), section("faults")

    def get(where, name):
        value = where.get(name, DEFAULTS[name])
        # Wrong types are the schema's to report; fall back to the default here.
        return value if isinstance(value, int) and not isinstance(value, bool) else DEFAULTS[name]

    lo, hi = get(network, "latency_min_us"), get(network, "latency_max_us")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        errors.append(("/network/latency_min_us", f"must not exceed latency_max_us ({lo} > {hi})"))

    lease, drift, margin = get(timing, "lease_us"), get(timing, "drift_ppm"), get(timing, "expiry_margin_us")
    if all(isinstance(v, int) for v in (lease, drift, margin)):
        allowance = lease // 1000000 * 2 * drift + (lease % 1000000) * 2 * drift // 1000000
        if allowance + margin >= lease:
            errors.append(("/timing/lease_us",
                           f"{lease} us leaves no usable lease after the drift allowance "
                           f"(2 x drift_ppm x lease = {allowance} us) and expiry_margin_us ({margin} us)"))

    stores, servers, per_server = get(topology, "stores"), get(topology, "servers"), get(topology, "processes_per_server")
    sessions = get(workload, "sessions")
    if not all(isinstance(v, int) for v in (stores, servers, per_server, sessions)):
        return errors
    processes = servers * per_server
    limits = {
        "process_crash": (processes, "processes"),
        "pause": (processes, "processes"),
        "drift_beyond": (processes, "processes"),
        "server_crash": (servers, "servers"),
        "store_crash": (stores, "stores"),
        "partition": (stores + processes, "nodes (stores, then processes)"),
        "clog": (stores + processes, "nodes (stores, then processes)"),
        "invalidate": (sessions, "sessions"),
    }
    schedule = faults.get("schedule", [])
    for i, entry in enumerate(schedule if isinstance(schedule, list) else []):
        if not isinstance(entry, dict) or entry.get("kind") not in limits:
            continue
        target = entry.get("target", 0)
        limit, what = limits[entry["kind"]]
        if isinstance(target, int) and target >= limit:
            errors.append((f"/faults/schedule/{i}/target",
                           f"{target} is out of range for {entry['kind']} (there are {limit} {what})"))
    return errors


def main(argv):
    if len(argv) < 3:
        sys.stderr.write("usage: scenario_schema_check.py SCHEMA PATH...\n")
        return 2
    schema_path = argv[1]
    try:
        with open(schema_path, encoding="utf-8") as f:
            schema = json.load(f)
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
    except (OSError, ValueError, jsonschema.exceptions.SchemaError) as e:
        sys.stderr.write(f"{schema_path}: not a usable schema: {e}\n")
        return 2
    validator = validator_class(schema)

    checked = 0
    bad_files = 0
    for path in scenario_files(argv[2:], schema_path):
        checked += 1
        problems = []
        try:
            with open(path, encoding="utf-8") as f:
                scenario = json.load(f)
        except OSError as e:
            problems.append(("/", f"cannot read: {e.strerror}"))
        except ValueError as e:
            problems.append(("/", f"not valid JSON: {e}"))
        else:
            for error in sorted(validator.iter_errors(scenario), key=lambda e: list(map(str, e.absolute_path))):
                problems.append((pointer(error.absolute_path), describe(error)))
            problems.extend(cross_field_errors(scenario))
        for where, message in problems:
            print(f"{path}: {where}: {message}")
        if problems:
            bad_files += 1
    if checked == 0:
        sys.stderr.write("scenario_schema_check: no scenario files found\n")
        return 2
    print(f"{checked} scenario files checked, {bad_files} with errors")
    return 1 if bad_files else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
