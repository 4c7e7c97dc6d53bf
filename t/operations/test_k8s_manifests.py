"""examples/k8s: the Kubernetes manifests parse, hold what a cluster of
PyREPL hosts needs, and agree with conf/cluster/ and with each other: the
ConfigMaps carry conf/cluster's host.conf and front.conf as they are, the
front's hosts.conf names one host per StatefulSet ordinal, ports, probes
and mounts line up, and the configurations the pods' scripts render are
valid nginx (nginx -t, the hosts' with this build's module).  No cluster
runs here: what a pod does at start is run on this machine instead."""

import glob
import os
import re
import shutil
import subprocess
import tempfile

import pytest
import yaml

from helpers import MODULE, NGINX, PRELOAD, ROOT, san_env

K8S = os.path.join(ROOT, "examples", "k8s")
CLUSTER = os.path.join(ROOT, "conf", "cluster")
# where the Debian package (util/package) installs the module
DEB_MODULE = "/usr/lib/nginx/modules/ngx_http_pyrepl_module.so"
# pyrepl_node's names
NODE = re.compile(r"[0-9a-z]{1,7}")


def read(path):
    with open(path) as f:
        return f.read()


@pytest.fixture(scope="module")
def objects():
    """Every document of every manifest, by (kind, name)."""
    found = {}
    for path in sorted(glob.glob(os.path.join(K8S, "*.yaml"))):
        if os.path.basename(path) == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(read(path)):
            assert doc and {"apiVersion", "kind", "metadata"} <= doc.keys(), \
                f"{path}: a document without apiVersion, kind or metadata"
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{key} twice"
            found[key] = doc
    return found


def one(objects, kind):
    docs = [d for (k, _), d in objects.items() if k == kind]
    assert len(docs) == 1, f"{len(docs)} {kind}s"
    return docs[0]


def volume_of(pod, container, path):
    """The volume a container mounts at the folder holding path, and the
    rest of path below it."""
    for m in container["volumeMounts"]:
        if path.startswith(m["mountPath"].rstrip("/") + "/"):
            vol = next(v for v in pod["volumes"] if v["name"] == m["name"])
            return vol, path[len(m["mountPath"].rstrip("/")) + 1:]
    raise AssertionError(f"nothing is mounted above {path}")


def port_of(listen):
    return int(listen.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def parts(objects):
    sts = one(objects, "StatefulSet")
    deploy = one(objects, "Deployment")
    host_pod = sts["spec"]["template"]["spec"]
    front_pod = deploy["spec"]["template"]["spec"]
    host, = host_pod["containers"]
    front, = front_pod["containers"]
    cm = {name: d["data"] for (k, name), d in objects.items()
          if k == "ConfigMap"}

    def configmap_of(pod, container, path):
        vol, key = volume_of(pod, container, path)
        assert "configMap" in vol, f"{path} is not in a ConfigMap"
        name = vol["configMap"]["name"]
        assert key in cm[name], f"ConfigMap {name} has no {key}"
        return cm[name]

    # the script each container runs, and the ConfigMap holding it
    host_cm = configmap_of(host_pod, host, host["command"][-1])
    front_cm = configmap_of(front_pod, front, front["command"][-1])
    return dict(sts=sts, deploy=deploy, host_pod=host_pod,
                front_pod=front_pod, host=host, front=front, cm=cm,
                host_cm=host_cm, front_cm=front_cm,
                host_env={e["name"]: e["value"] for e in host["env"]},
                front_env={e["name"]: e["value"] for e in front["env"]})


def test_manifests_have_what_a_cluster_needs(objects, parts):
    kinds = {k for k, _ in objects}
    assert {"Namespace", "StatefulSet", "Service", "Deployment", "ConfigMap",
            "PersistentVolumeClaim"} <= kinds

    # one namespace, every object in it
    ns = one(objects, "Namespace")["metadata"]["name"]
    for (kind, name), d in objects.items():
        if kind != "Namespace":
            assert d["metadata"].get("namespace") == ns, (kind, name)

    # kustomization.yaml lists every manifest
    kust = yaml.safe_load(read(os.path.join(K8S, "kustomization.yaml")))
    assert sorted(kust["resources"]) == sorted(
        os.path.basename(p) for p in glob.glob(os.path.join(K8S, "*.yaml"))
        if not p.endswith("kustomization.yaml"))

    # the StatefulSet's Service is headless and selects its pods
    sts = parts["sts"]
    svc = objects[("Service", sts["spec"]["serviceName"])]
    assert svc["spec"]["clusterIP"] == "None"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()

    # the front's Service selects the front's pods, and no host
    deploy = parts["deploy"]
    front_labels = deploy["spec"]["template"]["metadata"]["labels"]
    front_svc = [d for (k, _), d in objects.items() if k == "Service"
                 and d is not svc]
    assert len(front_svc) == 1
    assert front_svc[0]["spec"]["selector"].items() <= front_labels.items()
    assert not front_svc[0]["spec"]["selector"].items() <= labels.items()

    # the checkpoints: one ReadWriteMany claim, mounted where host.conf's
    # pyrepl_checkpoint_path is set to
    pvc = one(objects, "PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    vol, rest = volume_of(parts["host_pod"], parts["host"],
                          parts["host_env"]["PYREPL_CHECKPOINTS"] + "/x")
    assert rest == "x"
    assert vol["persistentVolumeClaim"]["claimName"] == \
        pvc["metadata"]["name"]

    # the module where the Debian package installs it, and a jail
    assert parts["host_env"]["PYREPL_MODULE"] == DEB_MODULE
    assert parts["host"]["securityContext"]["privileged"] is True


def test_configmaps_carry_conf_cluster_as_it_is(parts):
    assert parts["host_cm"]["host.conf"] == read(
        os.path.join(CLUSTER, "host.conf"))
    assert parts["front_cm"]["front.conf"] == read(
        os.path.join(CLUSTER, "front.conf"))


def hosts_map(hosts_conf):
    """map $pyrepl_node $pyrepl_host's entries in the front's hosts.conf."""
    body = re.search(r"map \$pyrepl_node \$pyrepl_host \{(.*?)\}",
                     hosts_conf, re.S)
    assert body, "hosts.conf has no map $pyrepl_node $pyrepl_host"
    entries = {}
    for line in body.group(1).strip().splitlines():
        key, value = line.strip().rstrip(";").split()
        entries[key.strip('"')] = value
    return entries


def test_front_names_one_host_per_ordinal(objects, parts):
    sts = parts["sts"]
    svc = objects[("Service", sts["spec"]["serviceName"])]
    ns = sts["metadata"]["namespace"]
    port, = svc["spec"]["ports"]
    domain = f"{svc['metadata']['name']}.{ns}.svc.cluster.local"
    entries = hosts_map(parts["front_cm"]["hosts.conf"])

    # creates: the headless Service's name; unknown names: "-" (front.conf
    # answers 404)
    assert entries.pop("") == f"{domain}:{port['port']}"
    assert entries.pop("default") == "-"

    # every ordinal, by its pod's DNS name, and nothing else
    name = sts["metadata"]["name"]
    assert entries == {str(i): f"{name}-{i}.{domain}:{port['port']}"
                       for i in range(sts["spec"]["replicas"])}
    for node in entries:
        assert NODE.fullmatch(node)


def test_ports_probes_and_listen_agree(objects, parts):
    host_conf = parts["host_cm"]["host.conf"]
    status = re.search(r"location = (\S+) \{\s*pyrepl_status;", host_conf)
    assert status, "host.conf has no location for pyrepl_status"

    for pod, container, listen in (
            (parts["sts"], parts["host"], parts["host_env"]["PYREPL_LISTEN"]),
            (parts["deploy"], parts["front"],
             parts["front_env"]["PYREPL_FRONT_LISTEN"])):
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert list(ports.values()) == [port_of(listen)]

        def port(p):
            return ports[p] if isinstance(p, str) else p

        for probe in ("readinessProbe", "livenessProbe"):
            check = container[probe]
            if container is parts["host"]:
                assert check["httpGet"]["path"] == status.group(1)
                assert port(check["httpGet"]["port"]) == port_of(listen)
            else:
                assert port(check["tcpSocket"]["port"]) == port_of(listen)

        labels = pod["spec"]["template"]["metadata"]["labels"]
        svc, = [d for (k, _), d in objects.items() if k == "Service"
                and d["spec"]["selector"].items() <= labels.items()]
        for p in svc["spec"]["ports"]:
            assert port(p["targetPort"]) == port_of(listen)


def test_scripts_paths_are_mounted(parts):
    """What the start scripts read is where the pod mounts it: the other
    scripts and the settings from ConfigMaps, the prefix on an emptyDir."""
    for pod, container, cm, script in (
            (parts["host_pod"], parts["host"], parts["host_cm"],
             "start-host.sh"),
            (parts["front_pod"], parts["front"], parts["front_cm"],
             "start-front.sh")):
        text = cm[script]
        for path in re.findall(r"/etc/pyrepl/[\w./-]+", text):
            vol, rest = volume_of(pod, container, path + "/")
            if "configMap" in vol:
                assert rest.rstrip("/") in parts["cm"][
                    vol["configMap"]["name"]], path
            else:
                names = [s["configMap"]["name"]
                         for s in vol["projected"]["sources"]
                         if "configMap" in s]
                assert rest == "" and names, path
        prefix = re.search(r"^prefix=(\S+)$", text, re.M).group(1)
        vol, _ = volume_of(pod, container, prefix + "/")
        assert "emptyDir" in vol


def nginx_t(prefix):
    env = None
    if PRELOAD:
        env = san_env(os.path.join(prefix, "logs"), preload=True)
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    r = subprocess.run([NGINX, "-t", "-p", prefix + "/", "-c",
                        "conf/nginx.conf"], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stderr
    return r


def unpack(data, to):
    os.makedirs(to)
    for key, value in data.items():
        with open(os.path.join(to, key), "w") as f:
            f.write(value)


def host_conf(parts, tmp_path, hostname, **env):
    """What host-conf.sh prints in a pod whose host name is hostname, with
    the container's environment, changed by env."""
    etc = tmp_path / "etc"
    if not etc.exists():
        unpack(parts["host_cm"], str(etc))
    run_env = {"PATH": "/usr/bin:/bin", "HOSTNAME": hostname,
               **parts["host_env"], **env}
    return subprocess.run(["/bin/sh", str(etc / "host-conf.sh")],
                          env=run_env, capture_output=True, text=True)


def test_host_pod_renders_a_valid_host(parts, tmp_path):
    """host-conf.sh names the host after its pod's ordinal and fills in
    host.conf; with this build's module and a checkpoint folder of its
    own, nginx -t passes on it and the settings pyrepl.d holds."""
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    pod = parts["sts"]["metadata"]["name"]
    r = host_conf(parts, tmp_path, f"{pod}-2", PYREPL_MODULE=MODULE,
                  PYREPL_CHECKPOINTS=str(checkpoints))
    assert r.returncode == 0, r.stderr
    assert "${" not in r.stdout
    assert re.findall(r"^\s*pyrepl_node (\S+);", r.stdout, re.M) == ["2"]
    assert re.findall(r"^\s*listen (\S+);", r.stdout, re.M) == \
        [parts["host_env"]["PYREPL_LISTEN"]]
    assert f"load_module {MODULE};" in r.stdout
    assert f"pyrepl_checkpoint_path {checkpoints};" in r.stdout

    # the pod's prefix: logs, tmp, conf/pyrepl.d with the settings (a
    # short path, as the pod's, for the sockets under it)
    prefix = tempfile.mkdtemp(prefix="pyrepl-k8s-")
    try:
        for d in ("logs", "tmp", "conf"):
            os.mkdir(os.path.join(prefix, d))
        with open(os.path.join(prefix, "conf", "nginx.conf"), "w") as f:
            f.write(r.stdout)
        settings, = [s["configMap"]["name"]
                     for v in parts["host_pod"]["volumes"]
                     if "projected" in v for s in v["projected"]["sources"]
                     if "configMap" in s]
        unpack(parts["cm"][settings], os.path.join(prefix, "conf",
                                                   "pyrepl.d"))
        nginx_t(prefix)
    finally:
        shutil.rmtree(prefix)

    # a host name without an ordinal, or one too long for pyrepl_node
    for bad in (pod, f"{pod}-x", f"{pod}-12345678"):
        r = host_conf(parts, tmp_path, bad)
        assert r.returncode != 0 and "host-conf.sh:" in r.stderr, bad
        assert r.stdout == ""


def test_front_pod_renders_a_valid_front(parts, tmp_path):
    """front-conf.sh fills front.conf's listen address and hosts.conf's
    resolver (this machine's name server standing in for the cluster's);
    nginx -t passes: the hosts' names are in variables, resolved only as
    requests come."""
    resolv = re.search(r"^nameserver\s+(\S+)", read("/etc/resolv.conf"),
                       re.M)
    if not resolv:
        pytest.skip("no nameserver in /etc/resolv.conf for front-conf.sh")
    etc = tmp_path / "etc"
    unpack(parts["front_cm"], str(etc))
    prefix = tmp_path / "front"
    for d in ("logs", "tmp", "conf"):
        (prefix / d).mkdir(parents=True)
    listen = parts["front_env"]["PYREPL_FRONT_LISTEN"]
    r = subprocess.run(["/bin/sh", str(etc / "front-conf.sh"),
                        str(prefix / "conf")],
                       env={"PATH": "/usr/bin:/bin", **parts["front_env"]},
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    # front.conf with ${PYREPL_FRONT_LISTEN} filled in, and nothing else
    assert (prefix / "conf" / "nginx.conf").read_text() == read(
        os.path.join(CLUSTER, "front.conf")).replace(
            "${PYREPL_FRONT_LISTEN}", listen)
    hosts = (prefix / "conf" / "hosts.conf").read_text()
    assert "${" not in hosts
    server = resolv.group(1)
    if ":" in server:
        server = f"[{server}]"
    assert re.findall(r"^resolver (\S+) ", hosts, re.M) == [server]
    nginx_t(str(prefix))
