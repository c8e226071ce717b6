#!/usr/bin/env python3
"""Proves that scripts/verify-compose can fail: it must pass the real compose.yaml and
Containerfile, and reject each broken copy below with the message that names the fault.

Run by scripts/test-verify-compose (which finds a python with PyYAML).
"""

import copy
import os
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERIFY = os.path.join(ROOT, "scripts", "verify-compose")
COMPOSE = os.path.join(ROOT, "compose.yaml")
CONTAINERFILE = os.path.join(ROOT, "Containerfile")


def env(document, service):
    return document["services"][service]["environment"]


def set_partitions(service, value):
    def mutate(document):
        env(document, service)["METERING_AGGREGATOR_PARTITIONS"] = value

    return mutate


def second_ingest(document):
    twin = copy.deepcopy(document["services"]["ingest"])
    twin["environment"]["METERING_INGEST_SOCKET"] = "/run/metering/ingest-2.sock"
    twin["environment"]["METERING_INGEST_ADMIN_SOCKET"] = "/run/metering/ingest-2-admin.sock"
    twin["healthcheck"]["test"] = ["CMD", "meterctl", "ping", "--socket", "/run/metering/ingest-2.sock"]
    document["services"]["ingest-2"] = twin


def private_sockets(document):
    document["services"]["aggregator-a"]["volumes"][0] = "private-sockets:/run/metering"
    document["volumes"]["private-sockets"] = {}


def aggregator_data_in_container(document):
    document["services"]["aggregator-a"]["volumes"] = ["sockets:/run/metering"]


def replicas(document):
    document["services"]["query-a"]["deploy"] = {"replicas": 2}


def typo(document):
    service = document["services"]["query-b"]
    service["helthcheck"] = service.pop("healthcheck")


def health_of_other(document):
    document["services"]["aggregator-b"]["healthcheck"]["test"] = ["CMD", "meterctl", "ping", "--socket", "/run/metering/aggregator-a.sock"]


def no_depends(document):
    del document["services"]["submitter"]["depends_on"]["aggregator-b"]


def duplicate_key(text):
    line = '    command: ["meter-ingest"]\n'
    assert line in text, "compose.yaml changed: update the duplicate-key case"
    return text.replace(line, line + line, 1)


def drop_product(text):
    assert " meter-bench" in text, "Containerfile changed: update the missing-product case"
    return text.replace(" meter-bench", "", 1)


def lint_finding(text):
    return text + "RUN cd /tmp && true\n"


# (what is broken, how, the message verify-compose must print)
COMPOSE_CASES = [
    ("aggregator replicas sharing a partition", set_partitions("aggregator-b", "1,2,3"), "both own partition 1"),
    ("a partition no replica owns", set_partitions("aggregator-b", "2"), "no aggregator replica owns partition(s) 3"),
    ("a partition the log does not have", set_partitions("aggregator-b", "2,3,4"), "owns partition 4, but the log has partitions 0..3"),
    (
        "an aggregator no submitter reads",
        lambda d: env(d, "submitter").update(METERING_AGGREGATOR_SOCKETS="/run/metering/aggregator-a.sock"),
        "aggregator-b: no submitter reads its socket",
    ),
    ("an unknown executable", lambda d: d["services"]["query-a"].update(command=["meter-qurey"]), "runs 'meter-qurey', not an executable"),
    ("an undeclared volume", lambda d: d["volumes"].pop("query-b-data"), "mounts volume 'query-b-data', which the top-level volumes: does not declare"),
    (
        "a socket off the shared volume",
        lambda d: env(d, "query-a").update(METERING_QUERY_SOCKET="/tmp/query-a.sock"),
        "METERING_QUERY_SOCKET=/tmp/query-a.sock is not on a shared volume",
    ),
    ("a client on another socket volume", private_sockets, "names /run/metering/ingest.sock, where no meter-ingest service listens"),
    ("a service without a health check", lambda d: d["services"]["query-b"].pop("healthcheck"), "query-b: no health check"),
    ("a health check of another service's socket", health_of_other, "does not ping its socket /run/metering/aggregator-b.sock"),
    ("two ingest services", second_ingest, "expected exactly one meter-ingest service"),
    ("replicas of a socket owner", replicas, "2 replicas of meter-query would share one socket path"),
    ("a misspelt key (schema)", typo, "'helthcheck' was unexpected"),
    ("a second image", lambda d: d["services"]["emulator"].update(image="other:latest"), "every component runs the one image"),
    (
        "an emulator only on its loopback",
        lambda d: env(d, "emulator").update(METERING_EMULATOR_HOST="127.0.0.1"),
        "METERING_EMULATOR_HOST must be 0.0.0.0",
    ),
    ("aggregator data inside the container", aggregator_data_in_container, "is not on a volume, so it is lost with the container"),
    ("a submitter not waiting for an aggregator", no_depends, "uses aggregator-b's socket but does not depend_on aggregator-b"),
]
COMPOSE_TEXT_CASES = [("a repeated key", duplicate_key, "duplicate key 'command'")]
CONTAINERFILE_CASES = [
    ("a product the Containerfile does not build", drop_product, "does not build meter-bench, an executable product"),
    ("a hadolint finding", lint_finding, "DL3003"),
]


def run(compose, containerfile):
    result = subprocess.run([VERIFY, compose, containerfile], capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def main():
    passed, failed = 0, 0

    def expect(name, ok, detail):
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}\n{detail}")

    status, output = run(COMPOSE, CONTAINERFILE)
    expect("the real compose.yaml and Containerfile pass", status == 0, output)
    original = open(COMPOSE, encoding="utf-8").read()
    document = yaml.safe_load(original)
    containerfile_text = open(CONTAINERFILE, encoding="utf-8").read()
    with tempfile.TemporaryDirectory() as work:
        broken_compose = os.path.join(work, "compose.yaml")
        broken_containerfile = os.path.join(work, "Containerfile")
        cases = [(name, mutate, message, "document") for name, mutate, message in COMPOSE_CASES]
        cases += [(name, mutate, message, "text") for name, mutate, message in COMPOSE_TEXT_CASES]
        cases += [(name, mutate, message, "containerfile") for name, mutate, message in CONTAINERFILE_CASES]
        for name, mutate, message, kind in cases:
            compose_path, containerfile_path = COMPOSE, CONTAINERFILE
            if kind == "document":
                broken = copy.deepcopy(document)
                mutate(broken)
                with open(broken_compose, "w", encoding="utf-8") as handle:
                    yaml.safe_dump(broken, handle, sort_keys=False)
                compose_path = broken_compose
            elif kind == "text":
                with open(broken_compose, "w", encoding="utf-8") as handle:
                    handle.write(mutate(original))
                compose_path = broken_compose
            else:
                with open(broken_containerfile, "w", encoding="utf-8") as handle:
                    handle.write(mutate(containerfile_text))
                containerfile_path = broken_containerfile
            status, output = run(compose_path, containerfile_path)
            expect(f"rejects {name}", status != 0 and message in output, f"exit {status}, expected {message!r} in:\n{output}")
    print(f"test-verify-compose: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
