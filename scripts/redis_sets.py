"""Redis deployments on free loopback ports for the fault and failover scripts: Sentinel
(a primary, a replica, three sentinels) and Redis Cluster (three primaries, each with a
replica), with a node timeout of 1 s, and what the scripts ask of them (the primary now,
whether a failover can go ahead).
"""
import os
import subprocess
import sys
import tempfile
import time

from bench import free_port

PRIMARY = "amw"


def usable_replica(out):
    """Whether a sentinel's `SENTINEL replicas` answer (key and value on lines of their own)
    holds a replica it could promote: linked to it and to the primary. One it has only heard
    of is listed too, `slave,disconnected`, and `SENTINEL FAILOVER` then answers NOGOODSLAVE."""
    lines = out.splitlines()
    records, fields = [], None
    for key, value in zip(lines[0::2], lines[1::2]):
        if key == "name":
            fields = {}
            records.append(fields)
        if fields is not None:
            fields[key] = value
    return any(f.get("flags") == "slave" and f.get("master-link-status") == "ok" for f in records)


class SentinelSet:
    """Two data servers and three sentinels on free loopback ports."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="amw-failover-")
        self.ports = [free_port() for _ in range(2)]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.procs = {}
        self.start_server(self.ports[0])
        self.start_server(self.ports[1], replica_of=self.ports[0])
        for p in self.sentinel_ports:
            conf = os.path.join(self.dir, f"sentinel-{p}.conf")
            with open(conf, "w") as f:
                f.write(f"port {p}\nbind 127.0.0.1\nsentinel resolve-hostnames no\n"
                        f"sentinel monitor {PRIMARY} 127.0.0.1 {self.ports[0]} 2\n"
                        f"sentinel down-after-milliseconds {PRIMARY} 1000\n"
                        f"sentinel failover-timeout {PRIMARY} 4000\n")
            self.procs[p] = subprocess.Popen(["redis-server", conf, "--sentinel"], stdout=subprocess.DEVNULL)
        self.await_replica()

    def start_server(self, port, replica_of=None):
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--repl-diskless-sync-delay", "0", "--dir", self.dir, "--dbfilename", f"dump-{port}.rdb"]
        if replica_of:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self.procs[port] = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        while self.cli(port, "PING") != "PONG":
            time.sleep(0.02)

    def cli(self, port, *args):
        out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True)
        return out.stdout.strip()

    def primary(self):
        for p in self.sentinel_ports:
            lines = self.cli(p, "SENTINEL", "get-master-addr-by-name", PRIMARY).splitlines()
            if len(lines) == 2:
                return int(lines[1])
        return None

    def await_replica(self, timeout=30):
        """Until the replica is in sync and every sentinel knows it: a failover can pick it."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            primary = self.primary()
            replica = [p for p in self.ports if p != primary][0]
            synced = "master_link_status:up" in self.cli(replica, "INFO", "replication")
            known = all(usable_replica(self.cli(s, "SENTINEL", "replicas", PRIMARY)) for s in self.sentinel_ports)
            if synced and known:
                return
            time.sleep(0.1)
        sys.exit("the replica never linked up")

    def url(self):
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{PRIMARY}"

    def stop(self):
        for proc in self.procs.values():
            proc.kill()


class ClusterSet:
    """Redis Cluster: three primaries, each with a replica, on free loopback ports."""

    CHANNEL = "amw:g:{lobby}"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="amw-failover-cluster-")
        self.ports = [free_port() for _ in range(6)]
        self.bus = {p: free_port() for p in self.ports}
        self.procs = {}
        for p in self.ports:
            self.start_server(p)
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                        "--cluster-replicas", "1", "--cluster-yes"], check=True, capture_output=True)
        self.await_replica()

    def start_server(self, port):
        own = os.path.join(self.dir, str(port))
        os.makedirs(own, exist_ok=True)
        self.procs[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--repl-diskless-sync-delay", "0", "--dir", own, "--cluster-enabled", "yes",
             "--cluster-node-timeout", "1000", "--cluster-port", str(self.bus[port]),
             "--cluster-replica-validity-factor", "0"], stdout=subprocess.DEVNULL)
        while self.cli(port, "PING") != "PONG":
            time.sleep(0.02)

    def cli(self, port, *args):
        out = subprocess.run(["redis-cli", "-c", "-p", str(port), *args], capture_output=True, text=True)
        return out.stdout.strip()

    def alive(self):
        return [p for p, proc in self.procs.items() if proc.poll() is None]

    def primary(self):
        """The primary of the lobby's slot, as the first live server sees it."""
        for p in self.alive():
            slot = self.cli(p, "CLUSTER", "KEYSLOT", self.CHANNEL)
            lines = self.cli(p, "CLUSTER", "SLOTS").splitlines()
            for i in range(len(lines) - 3):
                if lines[i].isdigit() and lines[i + 1].isdigit() and slot.isdigit() and \
                        int(lines[i]) <= int(slot) <= int(lines[i + 1]):
                    return int(lines[i + 3])
        return None

    def primaries(self, skip=()):
        """Every primary named in `CLUSTER SLOTS` of the first live server not in `skip`
        (a stopped server would not answer)."""
        for p in self.alive():
            if p in skip:
                continue
            lines = self.cli(p, "CLUSTER", "SLOTS").splitlines()
            return {int(lines[i + 3]) for i in range(len(lines) - 3)
                    if lines[i].isdigit() and lines[i + 1].isdigit() and lines[i + 2] == "127.0.0.1"
                    and lines[i + 3].isdigit() and int(lines[i]) <= int(lines[i + 1])}
        return set()

    def replica_of(self, primary):
        for p in self.alive():
            info = self.cli(p, "INFO", "replication")
            if f"master_port:{primary}" in info:
                return p
        return None

    def await_replica(self, timeout=30):
        """Until the cluster is whole and every primary has a replica in sync."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            alive = self.alive()
            ok = all("cluster_state:ok" in self.cli(p, "CLUSTER", "INFO") for p in alive)
            infos = [self.cli(p, "INFO", "replication") for p in alive]
            linked = all("role:master" in i or "master_link_status:up" in i for i in infos)
            replicas = sum("role:slave" in i for i in infos)
            if ok and linked and replicas == 3:
                return
            time.sleep(0.1)
        sys.exit("the cluster never came whole")

    def url(self):
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def stop(self):
        for proc in self.procs.values():
            proc.kill()
