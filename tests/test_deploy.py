"""The launch recipes in deploy/ agree with the CLI they launch.

The Kubernetes manifests' arguments parse with the real ``dovecote`` parser, and
their ports, Service, Secret and mounts match what that CLI listens on and what
``dovecote keys new`` writes. The Slurm script runs here with stand-ins for
``srun`` and ``dovecote`` (small shell scripts that record their arguments), so
the test sees the head and the nodes meet through one address file, the user's
program get that address, and everything stop afterwards. No network is used.
"""

from __future__ import annotations

import base64
import functools
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime import _cli

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SBATCH = ROOT / "deploy" / "slurm" / "dovecote.sbatch"
SECRET = "dovecote-keys"
POD_IP = "10.1.2.3"  # what the kubelet puts in $(POD_IP), for the test


@functools.cache
def _resources() -> list[dict[str, Any]]:
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def _resource(kind: str, name: str) -> dict[str, Any]:
    matches = [r for r in _resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name!r} in {K8S}, found {len(matches)}"
    return matches[0]


def _pod(kind: str, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = _resource(kind, name)["spec"]["template"]["spec"]
    return pod


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Replace $(VAR) as the kubelet does in a container's command and args."""
    return [re.sub(r"\$\(([A-Za-z_]\w*)\)", lambda m: env[m.group(1)], a) for a in args]


def _parse(argv: list[str]) -> Any:
    try:
        return _cli.build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"`dovecote {' '.join(argv)}` does not parse (argparse's error above)")


def _host_port(listen: Any) -> tuple[str, int]:
    if isinstance(listen, str):
        host, _, port = listen.rpartition(":")
        return host, int(port)
    host, port = listen
    return str(host), int(port)


def _dovecote_args(container: dict[str, Any]) -> list[str]:
    """The arguments of ``dovecote``: the image's entrypoint is ``tini -- dovecote``."""
    assert "command" not in container, "keep the image's entrypoint: give `args` only"
    return _expand(container["args"], {"POD_IP": POD_IP})


def _head() -> Any:
    return _parse(_dovecote_args(_container(_pod("Deployment", "dovecote-head"))))


def _node() -> Any:
    return _parse(_dovecote_args(_container(_pod("Deployment", "dovecote-node"))))


def _container_ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def _keys_mount(container: dict[str, Any]) -> str:
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "keys"]
    assert mount["readOnly"] is True
    path: str = mount["mountPath"]
    return path


# -- Kubernetes ------------------------------------------------------------------------------
def test_the_head_listens_on_every_interface_with_the_mounted_keys() -> None:
    head = _head()
    container = _container(_pod("Deployment", "dovecote-head"))
    assert head.command == "head"
    assert _host_port(head.listen) == ("0.0.0.0", 7470)
    assert head.keys == _keys_mount(container)  # without keys the head refuses 0.0.0.0


def test_there_is_never_more_than_one_head() -> None:
    spec = _resource("Deployment", "dovecote-head")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"  # a rolling update would run two at once


def test_the_head_service_exposes_the_three_head_ports() -> None:
    _, port = _host_port(_head().listen)
    expected = {port, port + 1, port + 2}  # control and join, bus in, bus out
    service = _resource("Service", "dovecote-head")["spec"]
    container_ports = _container_ports(_container(_pod("Deployment", "dovecote-head")))
    assert set(container_ports.values()) == expected
    assert {p["port"] for p in service["ports"]} == expected
    for p in service["ports"]:
        target = p.get("targetPort", p["port"])
        number = container_ports[target] if isinstance(target, str) else target
        assert number == p["port"], f"Service port {p['name']} reaches {number}"


def test_the_head_service_selects_the_head_pods_only() -> None:
    selector = _resource("Service", "dovecote-head")["spec"]["selector"]
    labels = _resource("Deployment", "dovecote-head")["spec"]["template"]["metadata"]["labels"]
    node_labels = _resource("Deployment", "dovecote-node")["spec"]["template"]["metadata"]
    assert selector.items() <= labels.items()
    assert not selector.items() <= node_labels["labels"].items()


def test_a_node_joins_through_the_head_service_and_advertises_its_pod_ip() -> None:
    node = _node()
    container = _container(_pod("Deployment", "dovecote-node"))
    _, head_port = _host_port(_head().listen)
    service = _resource("Service", "dovecote-head")
    assert node.command == "node"
    assert node.join == f"tcp://{service['metadata']['name']}:{head_port}"
    assert head_port in {p["port"] for p in service["spec"]["ports"]}
    assert node.join_file is None
    assert node.keys == _keys_mount(container)
    assert node.advertise == POD_IP
    assert _env(container)["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_a_node_declares_a_port_and_a_cpu_for_each_worker() -> None:
    node = _node()
    container = _container(_pod("Deployment", "dovecote-node"))
    assert "--workers" in container["args"]  # the default, the CPU count, is the host's
    ports = _container_ports(container)
    assert sorted(ports.values()) == list(range(node.port_base, node.port_base + node.workers))
    assert all(len(name) <= 15 for name in ports)  # Kubernetes' limit on a port name
    assert int(container["resources"]["requests"]["cpu"]) == node.workers


def test_the_driver_job_joins_the_same_head_with_the_same_keys() -> None:
    container = _container(_pod("Job", "dovecote-job"))
    env = _env(container)
    assert env["DOVECOTE_ADDRESS"] == _node().join
    assert env["DOVECOTE_KEYS"] == _keys_mount(container)


def _run_cli(argv: list[str]) -> None:
    try:
        _cli.main(argv)
    except SystemExit as stop:
        assert stop.code in (0, None), f"`dovecote {' '.join(argv)}` exited {stop.code}"


def test_every_pod_mounts_the_files_that_keys_new_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "keys"
    _run_cli(["keys", "new", str(directory), "--kubernetes-secret", SECRET])
    written = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}
    made = yaml.safe_load(capsys.readouterr().out)  # stdout holds the manifest alone
    assert made["kind"] == "Secret"
    assert made["metadata"]["name"] == SECRET
    assert set(made["data"]) == set(_resource("Secret", SECRET)["data"])
    for kind, name in [
        ("Deployment", "dovecote-head"),
        ("Deployment", "dovecote-node"),
        ("Job", "dovecote-job"),
    ]:
        pod = _pod(kind, name)
        (volume,) = [v["secret"] for v in pod["volumes"] if v["name"] == "keys"]
        assert volume["secretName"] == SECRET
        assert volume["defaultMode"] == 0o400
        # fsGroup would make the key files 0440, and dovecote refuses those
        assert "fsGroup" not in pod.get("securityContext", {}), name
        assert {item["path"] for item in volume["items"]} == written, name
        for item in volume["items"]:
            in_secret = base64.b64decode(made["data"][item["key"]])
            assert in_secret == (directory / item["path"]).read_bytes(), (name, item)


def test_the_secret_template_holds_no_key() -> None:
    for value in _resource("Secret", SECRET)["data"].values():
        assert value.startswith("<")  # a placeholder: kubectl refuses it as base64
    for path in (ROOT / "deploy").rglob("*"):
        if path.is_file():
            assert "secret-key" not in path.read_text(), path  # zmq's certificate field


def test_the_image_holds_the_package_and_runs_dovecote() -> None:
    text = DOCKERFILE.read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    copied = {
        source
        for line in text.splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    include = re.search(r"^include = \[(.*)\]$", pyproject, re.M)
    assert include is not None
    packages = {name.strip('" ') for name in include.group(1).split(",")}
    needed = {name for name in packages if "." not in name}
    needed |= {"pyproject.toml", "README.md", "LICENSE"}  # the build reads all three
    assert needed <= copied
    for name in copied:
        assert (ROOT / name).exists(), name
    assert re.search(r'^ENTRYPOINT \[.*"dovecote"\]$', text, re.M)


# -- the docs -------------------------------------------------------------------------------
def _documented_commands() -> list[list[str]]:
    """Each ``dovecote head|node|keys`` command in the docs' shell blocks (the
    Cluster section may live in docs/cluster.md or already in the README)."""
    paths = [ROOT / "README.md", ROOT / "docs" / "cluster.md", K8S / "README.md"]
    found = []
    for path in filter(Path.exists, paths):
        for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
            text = block.replace("\\\n", " ")  # continuation lines
            for command in re.findall(r"\bdovecote ((?:head|node|keys)\b[^'>|&#;\n]*)", text):
                found.append(shlex.split(command))
    return found


def test_the_documented_commands_parse() -> None:
    commands = _documented_commands()
    assert {argv[0] for argv in commands} == {"head", "node", "keys"}
    for argv in commands:
        args = _parse(argv)
        if argv[0] == "head" and not _host_port(args.listen)[0].startswith("127."):
            assert args.keys, f"`dovecote {shlex.join(argv)}` would be refused: no keys"


# -- Slurm ----------------------------------------------------------------------------------
FAKE_DOVECOTE = r"""#!/bin/bash
# Stands in for dovecote: records its arguments, then acts out its part.
printf '%s\0' "$@" > "$FAKE/call.$1.$$"
value() { # the value of option $1 in the arguments that follow it
    local name=$1
    shift
    while [ "$#" -gt 0 ]; do
        case "$1" in
        "$name") echo "$2"; return ;;
        "$name"=*) echo "${1#*=}"; return ;;
        esac
        shift
    done
}
case "$1" in
keys)
    mkdir -p "$3" && touch "$3/server.key_secret" ;;
head)
    [ -n "${FAKE_HEAD_FAILS:-}" ] && exit 3
    trap 'rm -f "$FAKE/head-alive"; exit 0' TERM
    touch "$FAKE/head-alive"
    listen=$(value --listen "$@")
    file=$(value --address-file "$@")
    printf 'tcp://192.0.2.7:%s' "${listen##*:}" > "$file.part" && mv "$file.part" "$file"
    for _ in $(seq 500); do sleep 0.02; done ;;  # bounded: never outlives a broken test
node)
    file=$(value --join-file "$@")
    for _ in $(seq 500); do [ -s "$file" ] && break; sleep 0.02; done
    cp "$file" "$FAKE/node-joined"
    for _ in $(seq 500); do [ -e "$FAKE/head-alive" ] || break; sleep 0.02; done
    exit 1 ;;  # as a node that lost its head
esac
"""

FAKE_SRUN = r"""#!/bin/bash
# Stands in for srun in a one-node job: records the options, runs the command once.
while [ "${1#-}" != "$1" ]; do
    echo "$1" >> "$FAKE/srun-options"
    shift
done
exec "$@"
"""

PROGRAM = 'printf "%s\\n%s" "$DOVECOTE_ADDRESS" "$DOVECOTE_KEYS" > "$FAKE/program"; exit 7'


def _sbatch(tmp_path: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    bin_dir, fake = tmp_path / "bin", tmp_path / "fake"
    bin_dir.mkdir()
    fake.mkdir()
    for name, text in [("dovecote", FAKE_DOVECOTE), ("srun", FAKE_SRUN)]:
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "FAKE": str(fake),
        "DOVECOTE_SHARED": str(tmp_path / "shared"),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_CPUS_ON_NODE": "3",
        **extra_env,
    }
    with subprocess.Popen(
        ["bash", str(SBATCH), "sh", "-c", PROGRAM],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # one process group: all of it can be ended on a timeout
    ) as job:
        try:
            out, err = job.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.communicate()
            pytest.fail("the sbatch script did not finish within 10 s")
    return subprocess.CompletedProcess(job.args, job.returncode, out, err)


def _calls(fake: Path, command: str) -> list[tuple[int, list[str]]]:
    return [
        (int(path.name.rsplit(".", 1)[1]), path.read_text().split("\0")[:-1])
        for path in fake.glob(f"call.{command}.*")
    ]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_sbatch_script_is_bash_with_its_directives_first() -> None:
    subprocess.run(["bash", "-n", str(SBATCH)], check=True, timeout=10)
    lines = SBATCH.read_text().splitlines()
    first_command = next(i for i, line in enumerate(lines) if line and not line.startswith("#"))
    directives = [i for i, line in enumerate(lines) if line.startswith("#SBATCH")]
    assert directives
    assert max(directives) < first_command  # sbatch ignores those after a command


def test_the_sbatch_script_joins_head_and_nodes_through_one_file(tmp_path: Path) -> None:
    done = _sbatch(tmp_path)
    fake = tmp_path / "fake"
    assert done.returncode == 7, done.stderr  # the program's status is the job's
    assert done.stderr == ""

    [(_, keys_argv)] = _calls(fake, "keys")
    [(head_pid, head_argv)] = _calls(fake, "head")
    [(node_pid, node_argv)] = _calls(fake, "node")
    keys_dir = str(tmp_path / "shared" / "keys")
    assert _parse(keys_argv).command == "keys"
    assert keys_argv[:3] == ["keys", "new", keys_dir]  # made once, in the shared directory
    head, node = _parse(head_argv), _parse(node_argv)
    assert _host_port(head.listen) == ("0.0.0.0", 7470)
    assert head.keys == node.keys == keys_dir
    assert head.address_file
    assert node.join_file == head.address_file
    assert node.join is None
    assert node.workers == 3
    srun_options = (fake / "srun-options").read_text().split()
    assert f"--cpus-per-task={node.workers}" in srun_options  # else a step gets 1 CPU
    assert "--kill-on-bad-exit=0" in srun_options  # one lost node does not end the others

    address, program_keys = (fake / "program").read_text().split("\n")
    assert address == "tcp://192.0.2.7:7470"  # what the head wrote, as the program saw it
    assert (fake / "node-joined").read_text() == address
    assert program_keys == keys_dir
    assert not (fake / "head-alive").exists()  # the head was stopped
    assert _gone(head_pid) and _gone(node_pid)
    assert not Path(head.address_file).parent.exists()  # the job's directory is removed
    assert (tmp_path / "shared" / "keys" / "server.key_secret").exists()  # the keys stay


def test_the_sbatch_script_runs_no_program_when_the_head_fails(tmp_path: Path) -> None:
    done = _sbatch(tmp_path, FAKE_HEAD_FAILS="1")
    fake = tmp_path / "fake"
    assert done.returncode == 1
    assert "dovecote head exited before it listened" in done.stderr
    assert not (fake / "program").exists()
    assert all(_gone(pid) for pid, _ in _calls(fake, "node"))  # ended, if it had started
