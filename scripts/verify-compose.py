#!/usr/bin/env python3
"""The structural checks of scripts/verify-compose: what a schema cannot know about this stack.

Usage: verify-compose.py COMPOSE CONTAINERFILE PACKAGE_SWIFT
Prints every problem found and exits 1 if there is any. Needs PyYAML.
"""

import os
import re
import shlex
import sys

import yaml

# What each executable listens on and connects to (DESIGN.md section 6.1, each process's --help).
LISTENS = {
    "meter-ingest": ["METERING_INGEST_SOCKET", "METERING_INGEST_ADMIN_SOCKET"],
    "meter-aggregator": ["METERING_AGGREGATOR_SOCKET"],
    "meter-query": ["METERING_QUERY_SOCKET"],
    "meter-notifier": ["METERING_NOTIFIER_SOCKET"],
}
CONNECTS = {
    "meter-aggregator": {"METERING_INGEST_SOCKET": "meter-ingest"},
    "meter-query": {"METERING_INGEST_SOCKET": "meter-ingest"},
    "meter-notifier": {"METERING_INGEST_SOCKET": "meter-ingest"},
    "meter-submitter": {
        "METERING_INGEST_ADMIN_SOCKET": "meter-ingest",
        "METERING_AGGREGATOR_SOCKETS": "meter-aggregator",
        "METERING_QUERY_SOCKET": "meter-query",
    },
}
# Processes that keep state which must outlive the container.
STATEFUL = {"meter-ingest", "meter-aggregator", "meter-query", "meter-notifier"}
DEFAULT_PARTITIONS = 4


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key repeated in one mapping (YAML says it is an error; PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def interpolate(value):
    """Compose's ${NAME}, ${NAME:-default}, ${NAME-default} and $$, from this process's environment."""

    def replace(match):
        if match.group(0) == "$$":
            return "$"
        name, operator, default = match.group(1), match.group(2), match.group(3) or ""
        if operator == ":-":
            return os.environ.get(name) or default
        if operator == "-":
            return os.environ.get(name, default)
        return os.environ.get(name, "")

    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|-)([^}]*))?\}", replace, value)


def environment_of(service):
    """The service's environment as a dict of strings (list or mapping form)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = {}
        for item in raw:
            name, _, value = str(item).partition("=")
            pairs[name] = value
        raw = pairs
    return {str(key): interpolate("" if value is None else str(value)) for key, value in raw.items()}


def command_words(command):
    if command is None:
        return []
    if isinstance(command, str):
        return shlex.split(interpolate(command))
    return [interpolate(str(word)) for word in command]


def mounts_of(service):
    """(source, target, kind) for each volume entry: kind is "volume" for a named volume, "bind" otherwise."""
    mounts = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            parts = interpolate(entry).split(":")
            if len(parts) == 1:
                mounts.append((None, parts[0], "anonymous"))
                continue
            source, target = parts[0], parts[1]
        else:
            source, target = entry.get("source"), entry.get("target")
            if entry.get("type") == "tmpfs":
                continue
        kind = "bind" if source and (source.startswith(("/", ".", "~"))) else "volume"
        mounts.append((source, target, kind))
    return mounts


def resolve(path, mounts):
    """Which mount holds `path`: (mount identity, path inside it), or None when it is in the container's own files."""
    best = None
    for source, target, kind in mounts:
        if kind == "anonymous" or not target:
            continue
        prefix = target.rstrip("/") + "/"
        if path == target or path.startswith(prefix):
            if best is None or len(target) > len(best[2]):
                best = (kind, source, target)
    if best is None:
        return None
    kind, source, target = best
    return (f"{kind}:{source}", os.path.relpath(path, target))


def healthcheck_commands(service):
    """Each command of the health check test, as a word list (CMD-SHELL split on && and ;)."""
    test = (service.get("healthcheck") or {}).get("test")
    if test is None:
        return None
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    kind, words = test[0], [interpolate(str(word)) for word in test[1:]]
    if kind == "NONE":
        return None
    if kind == "CMD":
        return [words]
    return [shlex.split(part) for part in re.split(r"&&|;", " ".join(words)) if part.strip()]


def package_executables(path):
    text = open(path, encoding="utf-8").read()
    return set(re.findall(r'\.executable\(\s*name:\s*"([^"]+)"', text))


def containerfile_facts(path, problems):
    """The products the Containerfile builds and the METERING_HOME it sets, checking the build recipe."""
    text = open(path, encoding="utf-8").read()
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]
    products = None
    home = None
    stages = [line for line in lines if line.upper().startswith("FROM ")]
    for line in lines:
        match = re.match(r'ARG\s+PRODUCTS="([^"]*)"', line)
        if match:
            products = match.group(1).split()
        match = re.match(r"ENV\s+METERING_HOME=(\S+)", line)
        if match:
            home = match.group(1)
    if products is None:
        problems.append(f'{path}: no ARG PRODUCTS="..." listing the executables to build')
        products = []
    if not re.search(r'for product in \$PRODUCTS; do swift build -c release [^;]*--product "\$product"', joined):
        problems.append(f'{path}: the build stage does not run `swift build -c release ... --product "$product"` for each of $PRODUCTS')
    if not re.search(r'for product in \$PRODUCTS; do install [^;]*"\$bin/\$product"', joined):
        problems.append(f"{path}: the build stage does not copy out every one of $PRODUCTS")
    if "libsystemd-dev" not in joined:
        problems.append(f"{path}: the build stage does not install libsystemd-dev")
    if len(stages) < 2:
        problems.append(f"{path}: expected a build stage and a runtime stage, found {len(stages)} FROM lines")
    users = [line.split(None, 1)[1] for line in lines if line.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"{path}: the runtime stage must end as a non-root USER")
    if home is None:
        problems.append(f"{path}: the runtime stage sets no ENV METERING_HOME=...")
    return set(products), home


def ignore_files(context, problems):
    """The build context's ignore files: the same for both engines, and keeping .build out."""
    # A .build of the host in the build context would be slow to send and could shadow the image's own build.
    ignores = []
    for name in (".dockerignore", ".containerignore"):
        try:
            ignores.append(open(os.path.join(context, name), encoding="utf-8").read())
        except OSError:
            problems.append(f"{context}: no {name} (Docker reads .dockerignore, Podman .containerignore)")
    if len(ignores) == 2 and ignores[0] != ignores[1]:
        problems.append(f"{context}: .dockerignore and .containerignore differ")
    if ignores and ".build/" not in ignores[0].split():
        problems.append(f"{context}: .dockerignore does not exclude .build/")


def check(compose_path, containerfile_path, package_path, allow_missing=False):
    problems = []
    notes = []
    with open(compose_path, encoding="utf-8") as handle:
        try:
            document = yaml.load(handle, Loader=UniqueKeyLoader)
        except yaml.YAMLError as error:
            return [f"{compose_path}: not valid YAML: {error}"], notes
    if not isinstance(document, dict) or not isinstance(document.get("services"), dict) or not document["services"]:
        return [f"{compose_path}: no services"], notes
    services = document["services"]
    declared_volumes = set((document.get("volumes") or {}).keys())
    declared_networks = set((document.get("networks") or {}).keys())

    package = package_executables(package_path)
    built, image_home = containerfile_facts(containerfile_path, problems)
    ignore_files(os.path.dirname(os.path.abspath(package_path)), problems)
    for name in sorted(package - built):
        problems.append(f"{containerfile_path}: does not build {name}, an executable product of {package_path}")
    for name in sorted(built - package):
        message = f"{containerfile_path}: builds {name}, which {package_path} does not declare"
        if allow_missing:
            notes.append(f"NOTE: {message} (allowed by VERIFY_UNITS_ALLOW_MISSING=1)")
        else:
            problems.append(message)

    images = {}
    roles = {}
    listening = {}  # (volume, path) -> (service, setting)
    used_volumes = set()
    for name, service in services.items():
        where = f"service {name}"
        if not isinstance(service, dict):
            problems.append(f"{where}: not a mapping")
            continue
        images.setdefault(service.get("image"), []).append(name)
        build = service.get("build")
        if build is not None:
            dockerfile = build.get("dockerfile") if isinstance(build, dict) else None
            if dockerfile != os.path.basename(containerfile_path):
                problems.append(f"{where}: builds from {dockerfile!r}, not {os.path.basename(containerfile_path)}")
        words = command_words(service.get("command"))
        if service.get("entrypoint") is not None:
            problems.append(f"{where}: sets an entrypoint; the image's executables are chosen with command:")
        if not words:
            problems.append(f"{where}: no command: naming the executable to run")
            continue
        executable = words[0]
        if executable not in built:
            problems.append(f"{where}: runs {executable!r}, not an executable the image builds ({', '.join(sorted(built))})")
            continue
        roles[name] = executable
        environment = environment_of(service)
        mounts = mounts_of(service)
        for source, _, kind in mounts:
            if kind == "volume":
                used_volumes.add(source)
                if source not in declared_volumes:
                    problems.append(f"{where}: mounts volume {source!r}, which the top-level volumes: does not declare")
            if kind == "anonymous":
                problems.append(f"{where}: has an anonymous volume; give it a name so that it is shared and kept")
        for network in service.get("networks") or []:
            if network not in declared_networks:
                problems.append(f"{where}: joins network {network!r}, which the top-level networks: does not declare")
        for dependency in service.get("depends_on") or []:
            if dependency not in services:
                problems.append(f"{where}: depends on {dependency!r}, which is not a service")
        replicas = (service.get("deploy") or {}).get("replicas", service.get("scale", 1))
        if executable in LISTENS and replicas != 1:
            problems.append(
                f"{where}: {replicas} replicas of {executable} would share one socket path; add a service per replica instead")
        home = environment.get("METERING_HOME", image_home) or "/var/lib/metering"
        if executable in STATEFUL:
            location = resolve(home.rstrip("/") + "/data", mounts)
            if location is None or not location[0].startswith(("volume:", "bind:")):
                problems.append(f"{where}: its data ({home}/data) is not on a volume, so it is lost with the container")
        for setting in LISTENS.get(executable, []):
            path = environment.get(setting)
            if not path:
                problems.append(f"{where}: sets no {setting}; give every socket an explicit path on the shared socket volume")
                continue
            location = resolve(path, mounts)
            if location is None:
                problems.append(f"{where}: {setting}={path} is not on a shared volume, so no other container can reach it")
                continue
            if location in listening:
                other = listening[location]
                problems.append(f"{where}: {setting}={path} is also the socket of service {other[0]} ({other[1]})")
            listening[location] = (name, setting)
    for image, names in images.items():
        if image is None:
            problems.append(f"services {', '.join(names)}: no image:")
    if len(images) > 1:
        problems.append(f"services use {len(images)} images ({', '.join(map(str, images))}); every component runs the one image")
    for volume in sorted(declared_volumes - used_volumes):
        problems.append(f"volume {volume!r} is declared but no service mounts it")

    ingest = [name for name, role in roles.items() if role == "meter-ingest"]
    if len(ingest) != 1:
        problems.append(f"expected exactly one meter-ingest service (the log's only writer), found {len(ingest)}: {', '.join(ingest)}")

    # Clients: every socket they use is a server's socket on a volume they share with it.
    socket_owner = {location: owner for location, owner in listening.items()}
    aggregator_sockets = {
        location: owner[0] for location, owner in listening.items() if roles.get(owner[0]) == "meter-aggregator"
    }
    readers = {location: [] for location in aggregator_sockets}
    for name, executable in roles.items():
        service = services[name]
        environment = environment_of(service)
        mounts = mounts_of(service)
        depends = set(service.get("depends_on") or [])
        for setting, server_role in CONNECTS.get(executable, {}).items():
            value = environment.get(setting)
            if not value:
                problems.append(f"service {name}: sets no {setting}")
                continue
            for path in [part.strip() for part in value.split(",") if part.strip()]:
                location = resolve(path, mounts)
                owner = socket_owner.get(location) if location else None
                if location is None:
                    problems.append(f"service {name}: {setting} names {path}, which is not on a volume it shares")
                elif owner is None or roles.get(owner[0]) != server_role:
                    problems.append(f"service {name}: {setting} names {path}, where no {server_role} service listens")
                else:
                    if owner[0] not in depends:
                        problems.append(f"service {name}: uses {owner[0]}'s socket but does not depend_on {owner[0]}")
                    if location in readers and executable == "meter-submitter":
                        readers[location].append(name)
    for location, names in readers.items():
        if not names:
            problems.append(f"service {aggregator_sockets[location]}: no submitter reads its socket, so its usage is never reported")
        elif len(names) > 1:
            problems.append(f"service {aggregator_sockets[location]}: read by {len(names)} submitters ({', '.join(names)}); each must have one")
    if not any(role == "meter-submitter" for role in roles.values()):
        problems.append("no meter-submitter service: nothing reports usage to the marketplace")

    # Partitions: the aggregator replicas own disjoint sets that together cover the log.
    count = DEFAULT_PARTITIONS
    if ingest:
        text = environment_of(services[ingest[0]]).get("METERING_PARTITIONS", str(DEFAULT_PARTITIONS))
        if not text.isdigit() or int(text) < 1:
            problems.append(f"service {ingest[0]}: METERING_PARTITIONS={text!r} is not a positive number")
        else:
            count = int(text)
    aggregators = [name for name, role in roles.items() if role == "meter-aggregator"]
    owner_of = {}
    for name in aggregators:
        text = environment_of(services[name]).get("METERING_AGGREGATOR_PARTITIONS", "all")
        if text == "all":
            owned = list(range(count))
            if len(aggregators) > 1:
                problems.append(f"service {name}: owns all partitions beside {len(aggregators) - 1} other aggregator replicas; set METERING_AGGREGATOR_PARTITIONS")
        else:
            owned = []
            for part in text.split(","):
                part = part.strip()
                if not part.isdigit():
                    problems.append(f"service {name}: METERING_AGGREGATOR_PARTITIONS={text!r} is not a list such as 0,2")
                    owned = []
                    break
                owned.append(int(part))
        for partition in owned:
            if partition >= count:
                problems.append(f"service {name}: owns partition {partition}, but the log has partitions 0..{count - 1}")
            elif partition in owner_of and owner_of[partition] != name:
                problems.append(f"services {owner_of[partition]} and {name} both own partition {partition}; replicas must own disjoint sets")
            else:
                owner_of[partition] = name
    if aggregators:
        missing = [str(partition) for partition in range(count) if partition not in owner_of]
        if missing:
            problems.append(f"no aggregator replica owns partition(s) {', '.join(missing)} of 0..{count - 1}: their usage is never aggregated")
    else:
        problems.append("no meter-aggregator service")

    # The marketplace: a URL naming a service must reach an emulator that listens beyond its loopback.
    for name, executable in roles.items():
        if executable != "meter-submitter":
            continue
        service = services[name]
        if service.get("network_mode") == "none":
            problems.append(f"service {name}: network_mode none, but the submitter must reach the marketplace")
        url = environment_of(service).get("METERING_MARKETPLACE_URL", "https://marketplaceapi.microsoft.com")
        match = re.match(r"https?://([^/:]+)(?::(\d+))?", url)
        host = match.group(1) if match else None
        if host in services:
            target = services[host]
            target_environment = environment_of(target)
            if roles.get(host) != "meter-marketplace-emulator":
                problems.append(f"service {name}: METERING_MARKETPLACE_URL={url} names service {host}, which is not the emulator")
            else:
                port = match.group(2) or "80"
                if target_environment.get("METERING_EMULATOR_PORT", "8790") != port:
                    problems.append(f"service {name}: METERING_MARKETPLACE_URL={url} uses port {port}, the emulator listens on {target_environment.get('METERING_EMULATOR_PORT', '8790')}")
                if target_environment.get("METERING_EMULATOR_HOST", "127.0.0.1") != "0.0.0.0":
                    problems.append(f"service {host}: METERING_EMULATOR_HOST must be 0.0.0.0 for other containers to reach it")
                if not set(service.get("networks") or ["default"]) & set(target.get("networks") or ["default"]):
                    problems.append(f"services {name} and {host} share no network")
                if host not in (service.get("depends_on") or []):
                    problems.append(f"service {name}: uses the emulator {host} but does not depend_on it")

    # Health checks: each service checks its own sockets (or its URL, or its passes) with meterctl.
    for name, executable in roles.items():
        service = services[name]
        commands = healthcheck_commands(service)
        if not commands:
            problems.append(f"service {name}: no health check")
            continue
        environment = environment_of(service)
        for words in commands:
            if not words or words[0] != "meterctl":
                problems.append(f"service {name}: health check runs {words[:1]}, not meterctl")
        pinged = {words[words.index("--socket") + 1] for words in commands if "--socket" in words[:-1]}
        for setting in LISTENS.get(executable, []):
            path = environment.get(setting)
            if path and path not in pinged:
                problems.append(f"service {name}: its health check does not ping its socket {path} ({setting})")
        if executable == "meter-submitter" and not any(words[1:2] == ["submitter-status"] and "--max-age" in words for words in commands):
            problems.append(f"service {name}: its health check is not `meterctl submitter-status --max-age SECONDS`")
        if executable == "meter-marketplace-emulator":
            port = environment.get("METERING_EMULATOR_PORT", "8790")
            urls = [words[words.index("--url") + 1] for words in commands if "--url" in words[:-1]]
            if not any(re.match(rf"http://(127\.0\.0\.1|localhost):{port}/", url) for url in urls):
                problems.append(f"service {name}: its health check does not ping its own port {port} (meterctl ping --url)")
    return problems, notes


def main(arguments):
    if len(arguments) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 64
    problems, notes = check(*arguments, allow_missing=os.environ.get("VERIFY_UNITS_ALLOW_MISSING") == "1")
    for note in notes:
        print(f"verify-compose: {note}")
    for problem in problems:
        print(f"verify-compose: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
