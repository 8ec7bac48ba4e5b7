#!/usr/bin/env python3
"""A private Exim on loopback, with a workload of known outcomes.

Debian's exim4-daemon-light conflicts with postfix, so it is never
installed: its packages are fetched with `apt-get download` into a cache
directory (reused when present) and unpacked with `dpkg -x` into the lab
directory. Exim runs as root with a configuration of its own (`-C`), its
spool and logs in the lab directory, listening on a loopback port, and
routes every remote domain to the project's sink (tests/lab/sink.py).

The Debian binary looks up its compiled-in user `Debian-exim` and two
libraries the system may lack. Nothing on the system is changed for that:
every exim command runs in a private mount namespace (`unshare -m`) in
which copies of /etc/passwd and /etc/group with that user, and an
ld.so.cache that also lists the unpacked libraries, are bind-mounted over
the originals.

    setup          fetch and unpack the packages, write the config, pick ports
    start          start the sink and the exim daemon (foreground, by pid)
    run-workload   send the workload, run the queue, write the truth JSON
    stop           stop the daemon and the sink, each by pid, and wait

Needs root, python3, apt-get, dpkg, unshare and ldconfig. Python 3.11
standard library only.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

from labcommon import free_port, pid_alive
from labcommon import wait_until as _wait_until

HERE = Path(__file__).resolve().parent
SINK = HERE / "sink.py"
PACKAGES = ["exim4-daemon-light", "exim4-base", "libgnutls-dane0", "libidn12"]
EXIM_USER = "Debian-exim"
REMOTE = "remote.test"
SENDER = "sender@client.test"
# Tight retry rule: a recipient that keeps failing temporarily is failed
# ("retry timeout exceeded") at the first attempt after this many seconds.
RETRY_CUTOFF = 6


def note(msg: str) -> None:
    print(f"exim_lab: {msg}", flush=True)


def wait_until(pred, timeout: float, what: str, interval: float = 0.2):
    return _wait_until(pred, timeout, what, die, interval)


def die(msg: str) -> None:
    print(f"exim_lab: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


class Lab:
    def __init__(self, root: Path):
        self.root = root.resolve()
        self.state_path = self.root / "state.json"
        self.ns = self.root / "ns"
        self.pkg_root = self.root / "pkg"
        self.spool = self.root / "spool"
        self.log_dir = self.root / "log"
        self.mainlog = self.log_dir / "mainlog"
        self.conf = self.root / "exim.conf"
        self.journal = self.root / "sink.jsonl"

    def load(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.exists() else {}

    def save(self, st: dict) -> None:
        self.state_path.write_text(json.dumps(st, indent=1))

    @property
    def exim_bin(self) -> Path:
        return self.pkg_root / "usr/sbin/exim4"

    def command(self, *args: str) -> list[str]:
        """An exim command line run inside the lab's mount namespace."""
        mounts = " && ".join(
            f"mount --bind {self.ns / name} /etc/{target}"
            for name, target in (("passwd", "passwd"), ("group", "group"),
                                 ("ld.so.cache", "ld.so.cache")))
        return ["unshare", "-m", "sh", "-c", f'{mounts} && exec "$0" "$@"',
                str(self.exim_bin), "-C", str(self.conf), *args]

    def exim(self, *args: str, input: bytes | None = None, check: bool = True):
        r = subprocess.run(self.command(*args), input=input, capture_output=True,
                           timeout=120)
        if check and r.returncode != 0:
            die(f"exim {' '.join(args)}: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
        return r


def cache_dir() -> Path:
    env = os.environ.get("EXIM_DEB_CACHE")
    if env:
        return Path(env)
    return HERE.parent.parent / "target" / "exim-debs"


def fetch_packages(cache: Path) -> list[Path]:
    cache.mkdir(parents=True, exist_ok=True)
    debs = []
    for pkg in PACKAGES:
        found = sorted(cache.glob(f"{pkg}_*.deb"))
        if not found:
            note(f"apt-get download {pkg} into {cache}")
            r = subprocess.run(["apt-get", "download", "-q", pkg], cwd=cache,
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
            found = sorted(cache.glob(f"{pkg}_*.deb"))
            if r.returncode != 0 or not found:
                die(f"apt-get download {pkg} failed: {r.stderr.decode(errors='replace')}")
        debs.append(found[-1])
    return debs


def unused_id(path: str, start: int) -> int:
    used = {int(l.split(":")[2]) for l in open(path) if l.count(":") >= 3 and l.split(":")[2].isdigit()}
    i = start
    while i in used:
        i += 1
    return i


def config(lab: Lab, st: dict) -> str:
    return f"""# maillog_exporter test lab: a private Exim on loopback.
keep_environment =
exim_path = {lab.exim_bin}
primary_hostname = mx.lab.test
qualify_domain = lab.test
domainlist local_domains = lab.test
spool_directory = {lab.spool}
log_file_path = {lab.log_dir}/%slog
exim_user = {EXIM_USER}
exim_group = {EXIM_USER}
never_users =
trusted_users = root
daemon_smtp_ports = {st['exim_port']}
local_interfaces = 127.0.0.1
host_lookup =
rfc1413_hosts =
delay_warning = 0s
log_selector = +pid +millisec +queue_time +queue_time_overall +deliver_time +smtp_connection
acl_smtp_mail = acl_mail
acl_smtp_rcpt = acl_rcpt
acl_smtp_data = acl_data

begin acl

acl_mail:
  deny    senders = *@blocked.test
          message = sender refused
  accept

acl_rcpt:
  deny    local_parts = ^norelay.*
          message = relay not permitted
  accept

acl_data:
  deny    condition = ${{if def:h_X-Lab-Reject:}}
          message = content refused
  accept

begin routers

sink:
  driver = manualroute
  domains = ! +local_domains
  route_list = * 127.0.0.1::{st['sink_smtp_port']}
  transport = remote_smtp
  self = send

begin transports

remote_smtp:
  driver = smtp
  allow_localhost

begin retry

*   *   F,{RETRY_CUTOFF}s,1s
"""


def cmd_setup(lab: Lab) -> None:
    if lab.root.exists() and (lab.root / "state.json").exists():
        st = lab.load()
        if st.get("exim_pid") and pid_alive(st["exim_pid"]):
            die("the lab is running; stop it first")
    lab.root.mkdir(parents=True, exist_ok=True)
    for d in (lab.ns, lab.pkg_root, lab.spool, lab.log_dir):
        shutil.rmtree(d, ignore_errors=True)
    for f in (lab.journal,):
        f.unlink(missing_ok=True)
    lab.ns.mkdir()
    for deb in fetch_packages(cache_dir()):
        subprocess.run(["dpkg", "-x", str(deb), str(lab.pkg_root)], check=True)
    if not lab.exim_bin.exists():
        die(f"{lab.exim_bin} missing after dpkg -x")
    # passwd and group with the user the binary was built for.
    passwd = Path("/etc/passwd").read_text()
    group = Path("/etc/group").read_text()
    uid = gid = None
    for line in passwd.splitlines():
        if line.startswith(EXIM_USER + ":"):
            uid, gid = int(line.split(":")[2]), int(line.split(":")[3])
    if uid is None:
        uid = unused_id("/etc/passwd", 64000)
        gid = unused_id("/etc/group", uid)
        passwd += f"{EXIM_USER}:x:{uid}:{gid}::/nonexistent:/usr/sbin/nologin\n"
        group += f"{EXIM_USER}:x:{gid}:\n"
    (lab.ns / "passwd").write_text(passwd)
    (lab.ns / "group").write_text(group)
    # ld.so.cache with the unpacked libraries: the setuid binary re-executes
    # itself as the exim user, which ignores LD_LIBRARY_PATH.
    dirs = []
    for conf in sorted(Path("/etc/ld.so.conf.d").glob("*.conf")):
        dirs += [l.strip() for l in conf.read_text().splitlines()
                 if l.strip() and not l.startswith("#")]
    dirs += ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib"]
    for lib in lab.pkg_root.glob("usr/lib/*"):
        if lib.is_dir():
            dirs.append(str(lib))
    (lab.ns / "ld.so.conf").write_text("\n".join(dirs) + "\n")
    subprocess.run(["ldconfig", "-C", str(lab.ns / "ld.so.cache"), "-f",
                    str(lab.ns / "ld.so.conf")], check=True)
    lab.spool.mkdir()
    lab.log_dir.mkdir()
    for d in (lab.spool, lab.log_dir):
        os.chown(d, uid, gid)
        d.chmod(0o750)
    lab.mainlog.touch()
    os.chown(lab.mainlog, uid, gid)
    lab.log_dir.chmod(0o755)
    lab.mainlog.chmod(0o644)
    st = {"exim_port": free_port(), "sink_smtp_port": free_port(),
          "sink_lmtp_port": free_port(), "uid": uid}
    lab.conf.write_text(config(lab, st))
    lab.save(st)
    r = lab.exim("-bV")
    version = r.stdout.decode(errors="replace").splitlines()[0]
    note(f"{version}; exim port {st['exim_port']}, sink {st['sink_smtp_port']}")


def cmd_start(lab: Lab) -> None:
    st = lab.load()
    sink = subprocess.Popen(
        [sys.executable, str(SINK), "--smtp-port", str(st["sink_smtp_port"]),
         "--lmtp-port", str(st["sink_lmtp_port"]), "--journal", str(lab.journal)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=open(lab.root / "sink.err", "wb"), start_new_session=True)
    st["sink_pid"] = sink.pid
    lab.save(st)
    line = sink.stdout.readline().decode().strip() if sink.stdout else ""
    if line != "ready":
        die(f"sink did not start: {line!r}")
    sink.stdout.close()
    daemon = subprocess.Popen(lab.command("-bdf", "-q1h"), stdin=subprocess.DEVNULL,
                              stdout=open(lab.root / "exim.out", "wb"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    st["exim_pid"] = daemon.pid
    lab.save(st)
    # Waiting on the log, not by connecting: a probe would be a session.
    wait_until(lambda: count(lab, " daemon started: ") >= 1, 20, "exim to listen")
    note(f"exim daemon pid {daemon.pid}, sink pid {sink.pid}")


def kill_and_wait(pid: int, what: str) -> None:
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if not pid_alive(pid):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.1)
    if pid_alive(pid):
        die(f"{what} (pid {pid}) did not stop")


def lab_processes(lab: Lab) -> list[int]:
    """Processes running the lab's unpacked exim binary (delivery children
    the daemon left behind)."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            exe = os.readlink(p / "exe")
        except OSError:
            continue
        if exe == str(lab.exim_bin):
            pids.append(int(p.name))
    return pids


def cmd_stop(lab: Lab) -> None:
    st = lab.load()
    if st.get("exim_pid"):
        kill_and_wait(st["exim_pid"], "exim daemon")
    for pid in lab_processes(lab):
        kill_and_wait(pid, "exim process")
    if st.get("sink_pid"):
        kill_and_wait(st["sink_pid"], "sink")
    st.pop("exim_pid", None)
    st.pop("sink_pid", None)
    lab.save(st)
    note("stopped")


def message(rcpts: list[str], subject: str, reject_data: bool = False) -> EmailMessage:
    m = EmailMessage()
    m["From"] = SENDER
    m["To"] = ", ".join(rcpts)
    m["Subject"] = subject
    if reject_data:
        m["X-Lab-Reject"] = "yes"
    m.set_content(f"{subject}\n")
    return m


def send(port: int, sender: str, rcpts: list[str], msg: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30) as s:
        try:
            s.send_message(msg, from_addr=sender, to_addrs=rcpts)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused,
                smtplib.SMTPDataError):
            pass


def log_lines(lab: Lab) -> list[str]:
    return lab.mainlog.read_text(errors="replace").splitlines()


def count(lab: Lab, needle: str) -> int:
    return sum(needle in l for l in log_lines(lab))


def queue_empty(lab: Lab) -> bool:
    r = lab.exim("-bpc")
    return r.stdout.strip() == b"0"


def cmd_run_workload(lab: Lab, truth_path: Path) -> None:
    st = lab.load()
    port = st["exim_port"]
    r = lambda local: f"{local}@{REMOTE}"  # noqa: E731
    # 1. delivered; 2. two recipients in one delivery (=> and ->);
    # 3. bounced (550); 4. deferred once, delivered by the queue run;
    # 5. deferred until the retry rule gives up: expired;
    # 6. one recipient refused at RCPT, the other delivered;
    # 7. sender refused at MAIL; 8. refused after DATA.
    send(port, SENDER, [r("ok1")], message([r("ok1")], "delivered"))
    send(port, SENDER, [r("ok2"), r("ok3")], message([r("ok2"), r("ok3")], "two"))
    send(port, SENDER, [r("reject1")], message([r("reject1")], "bounced"))
    send(port, SENDER, [r("deferonce1")], message([r("deferonce1")], "deferred once"))
    send(port, SENDER, [r("defer1")], message([r("defer1")], "expires"))
    send(port, SENDER, [r("norelay1"), r("ok4")], message([r("ok4")], "rcpt refused"))
    send(port, "spam@blocked.test", [r("ok5")], message([r("ok5")], "mail refused"))
    send(port, SENDER, [r("ok6")], message([r("ok6")], "data refused", reject_data=True))
    # Immediate deliveries: 4 sent (ok1, ok2, ok3, ok4), 1 bounce (reject1)
    # whose notification is delivered to the sender, 2 deferrals.
    wait_until(lambda: count(lab, " => ") + count(lab, " -> ") >= 5
               and count(lab, " == ") >= 2 and count(lab, " ** ") >= 1, 60,
               "the first delivery attempts")
    # Past the retry cutoff, a forced queue run: deferonce1 is delivered,
    # defer1 fails with "retry timeout exceeded" and is bounced.
    time.sleep(RETRY_CUTOFF + 2)
    lab.exim("-qff")
    wait_until(lambda: queue_empty(lab), 60, "an empty queue")
    wait_until(lambda: count(lab, " Completed") >= 8, 30, "8 messages completed")
    truth = {
        "received": 8,               # 6 accepted + 2 bounce messages
        "removed": 8,
        "sent": 7,                   # ok1 ok2 ok3 ok4 deferonce1 + 2 bounces
        # deferonce1 at arrival; defer1 at arrival and in the queue run,
        # after which Exim fails it: "** defer1@…: retry timeout exceeded"
        # is no attempt, it counts as the message's expiry.
        "deferred": 3,
        "bounced": 1,                # reject1 (550)
        "expired": 1,
        "bounce_notifications": 2,
        "connections": 8,
        "rejects": {"RCPT": 1, "MAIL": 1, "END-OF-MESSAGE": 1},
        "attempts_sent_count": 7, "attempts_sent_sum": 8,
        "attempts_bounced_count": 1, "attempts_bounced_sum": 1,
        "size_count": 8, "queue_time_count": 8,
        "delay_sent_count": 7, "delay_deferred_count": 3, "delay_bounced_count": 1,
    }
    # Cross-check the design against the log (fails loudly if Exim did
    # something else than designed).
    lines = log_lines(lab)
    got = {
        "received": sum(" <= " in l for l in lines),
        "removed": sum(l.endswith(" Completed") or " Completed QT=" in l for l in lines),
        "sent": sum(" => " in l or " -> " in l for l in lines),
        "deferred": sum(" == " in l for l in lines),
        "bounced": sum(" ** " in l and "retry timeout exceeded" not in l for l in lines),
        "expired": sum("retry timeout exceeded" in l for l in lines),
    }
    bad = {k: (v, truth[k]) for k, v in got.items() if v != truth[k]}
    if bad:
        die(f"the log does not match the design (got, want): {bad}")
    truth_path.write_text(json.dumps(truth, indent=1))
    note(f"workload done, truth in {truth_path}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["setup", "start", "run-workload", "stop"])
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--truth", type=Path)
    a = p.parse_args()
    lab = Lab(a.dir)
    if a.command == "setup":
        cmd_setup(lab)
    elif a.command == "start":
        cmd_start(lab)
    elif a.command == "run-workload":
        cmd_run_workload(lab, a.truth or lab.root / "truth.json")
    else:
        cmd_stop(lab)
    return 0


if __name__ == "__main__":
    sys.exit(main())
