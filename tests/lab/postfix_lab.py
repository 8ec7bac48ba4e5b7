#!/usr/bin/env python3
"""Private Postfix instance on loopback, driven by a workload with known outcomes.

Commands (all take --dir, the lab directory; `run` makes a temporary one):

    setup          write config, queue and data directories for a private instance
    start          start the sink (tests/lab/sink.py) and `postfix -c DIR/conf start`
    run-workload   send the workload, drive retries, write the truth JSON
    stop           stop Postfix and the sink, kill anything left, and wait
    status         print the lab state
    run            setup + start + run-workload + stop + log check, then copy
                   the maillog and truth JSON to --out-log / --out-truth

The system Postfix instance (/etc/postfix, /var/spool/postfix) is never
touched: every Postfix command gets `-c DIR/conf` (and MAIL_CONFIG), and
the instance has its own queue_directory, data_directory and maillog_file.
Must run as root (Postfix daemons and `postfix start` require it).

Python 3.11 standard library only. See tests/lab/README.md.
"""
from __future__ import annotations

import argparse
import collections
import email.utils
import json
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from labcommon import free_port, pid_alive
from labcommon import wait_until as _wait_until

HERE = Path(__file__).resolve().parent
SINK = HERE / "sink.py"

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTQUEUE = "/usr/sbin/postqueue"
SENDMAIL = "/usr/sbin/sendmail"

LOCAL_DOMAIN = "lab.test"       # mydestination: delivered by local(8)
REMOTE_DOMAIN = "remote.test"   # transport_maps -> smtp:[127.0.0.1]:SINK_SMTP
LMTP_DOMAIN = "lmtp.test"       # transport_maps -> lmtp:inet:127.0.0.1:SINK_LMTP
UNLISTED_DOMAIN = "elsewhere.test"  # not a relay domain: "Relay access denied"
BAD_SENDER = "spammer@bad.test"     # check_sender_access -> REJECT
LAB_USER = "labuser"                # real local user for local(8) deliveries
MYHOSTNAME = "mail.lab.test"
CLIENT_HELO = "client.lab.test"

# maximal_queue_lifetime / bounce_queue_lifetime. The expiring message is
# retried by hand (postqueue -f) once before and once after this age.
QUEUE_LIFETIME = 20
# Automatic retries are pushed past the end of the run so that every retry
# is one we trigger with `postqueue -f`: that makes the number of
# "status=deferred" lines exact instead of timing dependent.
BACKOFF = "1h"


# --------------------------------------------------------------------------
# helpers


def die(msg: str) -> "NoReturn":  # type: ignore[name-defined]
    print(f"postfix_lab: error: {msg}", file=sys.stderr)
    raise SystemExit(1)


def note(msg: str) -> None:
    print(f"postfix_lab: {msg}", file=sys.stderr, flush=True)


def wait_until(pred, timeout: float, what: str, interval: float = 0.2):
    return _wait_until(pred, timeout, what, die, interval)


class Lab:
    """Paths and state of one lab directory."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.conf = self.root / "conf"
        self.queue = self.root / "queue"
        self.data = self.root / "data"
        self.mail = self.root / "mail"
        self.maillog = self.root / "maillog"
        self.journal = self.root / "sink.jsonl"
        self.sink_out = self.root / "sink.out"
        self.state_file = self.root / "lab.json"

    # state ---------------------------------------------------------------
    def load(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            die(f"{self.root} is not a lab directory (run setup first)")

    def save(self, state: dict) -> None:
        self.state_file.write_text(json.dumps(state, indent=2) + "\n")

    # postfix commands ----------------------------------------------------
    def env(self) -> dict:
        env = dict(os.environ)
        env["MAIL_CONFIG"] = str(self.conf)
        env.setdefault("LANG", "C")
        return env

    def pf(self, *args: str, check: bool = True, input: bytes | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a Postfix command with -c <conf> (and MAIL_CONFIG) for this lab."""
        cmd = [args[0], "-c", str(self.conf), *args[1:]]
        if args[0] == SENDMAIL:  # sendmail spells it -C
            cmd[1] = "-C"
        p = subprocess.run(cmd, env=self.env(), input=input, capture_output=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            die(f"{' '.join(cmd)} failed ({p.returncode}): "
                f"{p.stderr.decode(errors='replace').strip()}")
        return p

    def queue_listing(self) -> list[dict]:
        out = self.pf(POSTQUEUE, "-j").stdout.decode()
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    def master_pid(self) -> int | None:
        try:
            pid = int((self.queue / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def our_processes(self) -> list[int]:
        """Processes started for this instance: Postfix passes MAIL_CONFIG
        to every daemon (import_environment), so match on it exactly."""
        want = f"MAIL_CONFIG={self.conf}".encode()
        pids = []
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == os.getpid():
                continue
            try:
                with open(f"/proc/{d}/environ", "rb") as f:
                    if want in f.read().split(b"\0"):
                        pids.append(int(d))
            except OSError:
                continue
        return [p for p in pids if pid_alive(p)]

    def journal_counts(self) -> collections.Counter:
        c: collections.Counter = collections.Counter()
        try:
            for line in self.journal.read_text().splitlines():
                j = json.loads(line)
                c[j["rcpt"].lower()] += 1
        except FileNotFoundError:
            pass
        return c


# --------------------------------------------------------------------------
# setup


def main_cf(lab: Lab, st: dict) -> str:
    c = lab.conf
    return f"""\
# Private Postfix lab instance generated by tests/lab/postfix_lab.py.
# Not the system instance: started with `postfix -c {c}`.
compatibility_level = 3.6

queue_directory = {lab.queue}
data_directory = {lab.data}
# Programs and the installation manifest are the system's (read only).
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop

# Log to a file through postlogd (master.cf service "postlog").
# maillog_file must start with one of maillog_file_prefixes.
maillog_file = {lab.maillog}
maillog_file_prefixes = {lab.root}
syslog_name = postfix

myhostname = {MYHOSTNAME}
mydomain = lab.test
myorigin = $mydomain
mydestination = {LOCAL_DOMAIN}, localhost
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
biff = no
append_dot_mydomain = no

# Routing: remote domains to the sink's SMTP port, one domain to its LMTP
# port, anything else (only reachable via sendmail/pickup) to the relayhost.
relay_domains = {REMOTE_DOMAIN}, {LMTP_DOMAIN}
transport_maps = texthash:{c}/transport
relayhost = [127.0.0.1]:{st['sink_smtp_port']}
# No DNS anywhere.
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
smtpd_peername_lookup = yes

# Local delivery: passwd users and aliases; mailboxes under the lab dir.
alias_maps = texthash:{c}/aliases
alias_database =
local_recipient_maps = unix:passwd.byname $alias_maps
mail_spool_directory = {lab.mail}
home_mailbox =
mailbox_command =
forward_path =

# smtpd policy: relay only to relay_domains (no permit_mynetworks, so
# 127.0.0.1 gets "Relay access denied" for other domains), and one sender
# rejected by check_sender_access.
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = check_sender_access texthash:{c}/sender_access, permit
smtpd_banner = $myhostname ESMTP lab

# Fast queue life cycle. Retries are triggered only by `postqueue -f`.
maximal_queue_lifetime = {QUEUE_LIFETIME}s
bounce_queue_lifetime = {QUEUE_LIFETIME}s
queue_run_delay = {BACKOFF}
minimal_backoff_time = {BACKOFF}
maximal_backoff_time = {BACKOFF}
delay_warning_time = 0
smtp_connect_timeout = 5s
lmtp_connect_timeout = 5s
"""


def master_cf(st: dict) -> str:
    return f"""\
# Private Postfix lab instance generated by tests/lab/postfix_lab.py.
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:{st['smtpd_port']} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def ensure_lab_user() -> None:
    try:
        pwd.getpwnam(LAB_USER)
    except KeyError:
        note(f"creating local user {LAB_USER}")
        subprocess.run(["useradd", "--system", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        LAB_USER], check=True)


def cmd_setup(lab: Lab, smtpd_port: int | None = None) -> None:
    if os.geteuid() != 0:
        die("must run as root")
    if lab.state_file.exists():
        st = lab.load()
        if st.get("master_started") or lab.master_pid() or lab.our_processes():
            die(f"{lab.root} has a running lab; stop it first")
        # A fresh instance: drop the previous run's queue, mail and log.
        for d in (lab.queue, lab.data, lab.mail):
            shutil.rmtree(d, ignore_errors=True)
        for f in (lab.maillog, lab.journal, lab.sink_out):
            f.unlink(missing_ok=True)
    elif lab.root.exists() and any(lab.root.iterdir()):
        die(f"{lab.root} exists, is not empty and is not a lab directory")
    ensure_lab_user()
    st = {
        "dir": str(lab.root),
        "smtpd_port": smtpd_port or free_port(),
        "sink_smtp_port": free_port(),
        "sink_lmtp_port": free_port(),
    }
    lab.root.mkdir(parents=True, exist_ok=True)
    os.chmod(lab.root, 0o755)  # postfix and labuser must traverse it
    for d in (lab.conf, lab.queue):
        d.mkdir(exist_ok=True)
        os.chown(d, 0, 0)
        os.chmod(d, 0o755)
    lab.mail.mkdir(exist_ok=True)
    os.chmod(lab.mail, 0o1777)
    (lab.conf / "main.cf").write_text(main_cf(lab, st))
    (lab.conf / "master.cf").write_text(master_cf(st))
    (lab.conf / "transport").write_text(
        f"{REMOTE_DOMAIN}\tsmtp:[127.0.0.1]:{st['sink_smtp_port']}\n"
        f"{LMTP_DOMAIN}\tlmtp:inet:127.0.0.1:{st['sink_lmtp_port']}\n")
    (lab.conf / "sender_access").write_text(f"{BAD_SENDER}\tREJECT\n")
    (lab.conf / "aliases").write_text(
        f"postmaster\t{LAB_USER}\n"
        f"root\t{LAB_USER}\n"
        # an alias that passes local_recipient_maps but expands to a user
        # that does not exist: local(8) bounces it ("unknown user")
        "ghost\tnosuchuser\n")
    lab.save(st)
    note(f"lab set up in {lab.root} (smtpd 127.0.0.1:{st['smtpd_port']}, "
         f"sink smtp {st['sink_smtp_port']}, lmtp {st['sink_lmtp_port']})")


# --------------------------------------------------------------------------
# start / stop


def cmd_start(lab: Lab) -> None:
    st = lab.load()
    if lab.master_pid():
        die("Postfix for this lab is already running")
    # sink
    lab.journal.unlink(missing_ok=True)
    out = open(lab.sink_out, "wb")
    sink = subprocess.Popen(
        [sys.executable, str(SINK), "--smtp-port", str(st["sink_smtp_port"]),
         "--lmtp-port", str(st["sink_lmtp_port"]), "--journal", str(lab.journal)],
        stdout=subprocess.PIPE, stderr=out, start_new_session=True)
    st["sink_pid"] = sink.pid
    lab.save(st)
    line = sink.stdout.readline().decode().strip() if sink.stdout else ""
    if line != "ready":
        die(f"sink did not start: {line!r}; see {lab.sink_out}")
    # The sink's stdout is no longer read; give it somewhere to go.
    sink.stdout.close()
    # Postfix: `postfix check` creates missing queue directories (post-install
    # create-missing) and validates the config; `start` runs it again.
    p = lab.pf(POSTFIX, "check")
    if p.stderr.strip():
        note(f"postfix check: {p.stderr.decode(errors='replace').strip()}")
    st["master_started"] = True
    lab.save(st)
    lab.pf(POSTFIX, "start")
    pid = wait_until(lab.master_pid, 20, "master.pid")
    st["master_pid"] = pid
    lab.save(st)

    # Probe that the port listens. A probe connection would appear in the
    # log as connect/lost connection, so only check that the socket exists.
    def listening() -> bool:
        port_hex = f":{st['smtpd_port']:04X}"
        with open("/proc/net/tcp") as f:
            return any(port_hex in l.split()[1] and l.split()[3] == "0A"
                       for l in f.readlines()[1:])

    wait_until(listening, 20, "smtpd to listen")
    note(f"Postfix master pid {pid}, sink pid {sink.pid}")


def kill_and_wait(pids: list[int], what: str, timeout: float = 10) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
            try:  # reap if they are our children
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.1)
        left = [p for p in pids if pid_alive(p)]
        if not left:
            return
        note(f"{what} still running after SIG{sig.name[3:]}: {left}")
        pids = left
    die(f"could not stop {what}: {pids}")


def cmd_stop(lab: Lab) -> None:
    st = lab.load() if lab.state_file.exists() else {}
    problems = []
    if lab.conf.exists() and (lab.master_pid() or st.get("master_started")):
        pid = lab.master_pid()
        if pid:
            p = lab.pf(POSTFIX, "stop", check=False)
            if p.returncode != 0:
                problems.append(f"postfix stop: {p.stderr.decode(errors='replace').strip()}")
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and pid_alive(pid):
                time.sleep(0.1)
            if pid_alive(pid):
                problems.append("master did not exit after `postfix stop`")
                kill_and_wait([pid], "master")
    # Anything still carrying this instance's MAIL_CONFIG (postlogd, a
    # delivery agent, a stray postdrop) is ours: end it by pid.
    left = lab.our_processes()
    if left:
        problems.append(f"processes left after stop: {left}")
        kill_and_wait(left, "Postfix processes")
    sink_pid = st.get("sink_pid")
    if sink_pid and pid_alive(sink_pid):
        kill_and_wait([sink_pid], "sink")
    st["master_started"] = False
    st.pop("sink_pid", None)
    if lab.state_file.exists():
        lab.save(st)
    for pr in problems:
        note(f"stop: {pr}")
    note("stopped")


# --------------------------------------------------------------------------
# workload design
#
# Every recipient lists the delivery attempts Postfix will log for it, one
# status per attempt, in the phases below. The truth JSON is computed from
# this table (never from the log).
#
#   phase 1: submission and first delivery attempts
#   phase 2: `postqueue -f` shortly after submission: deferonce* recipients
#            are accepted by the sink, the expiring message is deferred again
#   phase 3: `postqueue -f` once the expiring message is older than
#            maximal_queue_lifetime: deferred a third time, then
#            "status=expired, returned to sender"


@dataclass
class Rcpt:
    addr: str
    transport: str | None          # smtp / lmtp / local; None if smtpd rejects it
    attempts: list[str] = field(default_factory=list)  # statuses, in order
    reject: tuple[int, str, str] | None = None  # (code, dsn, reason) at RCPT
    delivered_to: str | None = None  # local(8) logs the alias expansion
    notify_success: bool = False


@dataclass
class Msg:
    key: str
    sender: str
    rcpts: list[Rcpt]
    via: str = "smtpd"          # smtpd or pickup
    note: str = ""
    queue_id: str | None = None  # filled in at submission (smtpd reply)
    submitted_at: float | None = None

    @property
    def accepted(self) -> bool:
        return any(r.reject is None for r in self.rcpts)


def R(local: str, domain: str, transport: str | None, *attempts: str, **kw) -> Rcpt:
    return Rcpt(f"{local}@{domain}", transport, list(attempts), **kw)


RELAY_DENIED = (554, "5.7.1", "Relay access denied")
SENDER_REJECTED = (554, "5.7.1", "Sender address rejected: Access denied")
UNKNOWN_LOCAL = (550, "5.1.1", "Recipient address rejected: User unknown in local recipient table")

LU = f"{LAB_USER}@{LOCAL_DOMAIN}"
EXT = f"sender@{REMOTE_DOMAIN}"


def workload() -> list[list[Msg]]:
    """The workload: a list of SMTP connections, each a list of messages.
    The last "connection" holds messages submitted with sendmail (pickup)."""
    return [
        [  # connection 1: two transactions on one connection
            Msg("smtp-single", EXT, [R("ok1", REMOTE_DOMAIN, "smtp", "sent")],
                note="one recipient relayed over SMTP"),
            Msg("multi-transport", EXT, [
                R("ok2", REMOTE_DOMAIN, "smtp", "sent"),
                R("ok3", REMOTE_DOMAIN, "smtp", "sent"),
                R("ok4", LMTP_DOMAIN, "lmtp", "sent"),
                R(LAB_USER, LOCAL_DOMAIN, "local", "sent"),
            ], note="four recipients over smtp, lmtp and local"),
        ],
        [  # connection 2: remote bounces (550 at RCPT) over LMTP and SMTP
            Msg("lmtp-bounce", LU, [
                R("ok5", LMTP_DOMAIN, "lmtp", "sent"),
                R("reject1", LMTP_DOMAIN, "lmtp", "bounced"),
            ], note="LMTP server answers 550 for one recipient"),
            Msg("smtp-bounce", LU, [
                R("reject2", REMOTE_DOMAIN, "smtp", "bounced"),
                R("ok6", REMOTE_DOMAIN, "smtp", "sent"),
            ], note="SMTP server answers 550 for one recipient"),
        ],
        [  # connection 3: deferrals
            Msg("smtp-deferonce", LU, [
                R("deferonce1", REMOTE_DOMAIN, "smtp", "deferred", "sent"),
                R("ok7", REMOTE_DOMAIN, "smtp", "sent"),
            ], note="451 once, delivered on the phase-2 retry"),
            Msg("lmtp-deferonce", LU, [
                R("deferonce2", LMTP_DOMAIN, "lmtp", "deferred", "sent"),
            ], note="LMTP 451 once, delivered on the phase-2 retry"),
            Msg("expire", LU, [
                R("defer-expire", REMOTE_DOMAIN, "smtp", "deferred", "deferred", "deferred"),
            ], note="always 451; expires after maximal_queue_lifetime"),
        ],
        [  # connection 4: local outcomes
            Msg("local-unknown-user", LU, [
                R("ghost", LOCAL_DOMAIN, "local", "bounced", delivered_to=f"nosuchuser@{LOCAL_DOMAIN}"),
            ], note="alias to a user that does not exist: local(8) bounces"),
            Msg("local-notify-success", LU, [
                R(LAB_USER, LOCAL_DOMAIN, "local", "sent", notify_success=True),
            ], note="NOTIFY=SUCCESS: Postfix sends a delivery status notification"),
        ],
        [  # connection 5: smtpd rejects, nothing queued
            Msg("relay-denied", EXT, [R("someone", UNLISTED_DOMAIN, None, reject=RELAY_DENIED)]),
            Msg("sender-rejected", BAD_SENDER, [R("ok8", REMOTE_DOMAIN, None, reject=SENDER_REJECTED)]),
            Msg("unknown-local-rejected", EXT, [R("nouser", LOCAL_DOMAIN, None, reject=UNKNOWN_LOCAL)]),
        ],
        [  # connection 6: a partly rejected message (reject logged with the queue id)
            Msg("partly-rejected", EXT, [
                R("ok9", REMOTE_DOMAIN, "smtp", "sent"),
                R("stranger", UNLISTED_DOMAIN, None, reject=RELAY_DENIED),
            ], note="second RCPT refused after a queue id was assigned"),
        ],
        [  # not SMTP: sendmail(1) -> postdrop -> pickup
            Msg("pickup", LU, [R("ok10", REMOTE_DOMAIN, "smtp", "sent")], via="pickup",
                note="submitted with sendmail(1)"),
        ],
    ]


def compute_truth(conns: list[list[Msg]]) -> dict:
    """Everything Postfix should log, derived from the design only."""
    msgs = [m for c in conns for m in c]
    deliveries: dict = {t: {"sent": 0, "deferred": 0, "bounced": 0}
                        for t in ("smtp", "lmtp", "local")}
    notifications = {"non_delivery": 0, "delay": 0, "success": 0}
    rejects: collections.Counter = collections.Counter()
    rejects_with_qid = 0
    received_by = {"smtpd": 0, "pickup": 0, "bounce": 0}
    expired = 0
    envelope_lines = 0
    per_rcpt = []
    for m in msgs:
        for i, r in enumerate(m.rcpts):
            if r.reject:
                rejects[(r.reject[0], r.reject[1], "RCPT", r.reject[2])] += 1
                if any(x.reject is None for x in m.rcpts[:i]):
                    rejects_with_qid += 1
                continue
            for a in r.attempts:
                deliveries[r.transport][a] += 1
        if not m.accepted:
            continue
        received_by[m.via] += 1
        # qmgr logs "from=<...>, size=..., nrcpt=N (queue active)" every
        # time the message enters the active queue: once per attempt round.
        rounds = max(len(r.attempts) for r in m.rcpts if r.reject is None)
        envelope_lines += rounds
        finals = [r.attempts[-1] for r in m.rcpts if r.reject is None]
        is_expired = "deferred" in finals
        has_bounce = "bounced" in finals
        assert not (is_expired and has_bounce), "design: keep bounce and expiry apart"
        if is_expired:
            expired += 1
        if (is_expired or has_bounce) and m.sender:
            notifications["non_delivery"] += 1
        if any(r.notify_success and r.attempts[-1] == "sent" for r in m.rcpts):
            notifications["success"] += 1
    # Every notification is a new message from <> to the (local) sender,
    # delivered by local(8) in one attempt.
    n_notes = sum(notifications.values())
    for m in msgs:
        if m.accepted:
            assert m.sender.endswith("@" + LOCAL_DOMAIN) or not (
                any(r.attempts and r.attempts[-1] != "sent" for r in m.rcpts)), m.key
    deliveries["local"]["sent"] += n_notes
    notification_list = []
    for m in msgs:
        if not m.accepted:
            continue
        finals = [r.attempts[-1] for r in m.rcpts if r.reject is None]
        if "deferred" in finals or "bounced" in finals:
            notification_list.append({"for_message": m.key, "kind": "non_delivery",
                                      "to": m.sender, "transport": "local",
                                      "attempts": ["sent"]})
        if any(r.notify_success and r.attempts[-1] == "sent" for r in m.rcpts):
            notification_list.append({"for_message": m.key, "kind": "success",
                                      "to": m.sender, "transport": "local",
                                      "attempts": ["sent"]})
    assert len(notification_list) == n_notes
    received_by["bounce"] = n_notes
    envelope_lines += n_notes
    received = sum(received_by.values())
    by_status = {s: sum(deliveries[t][s] for t in deliveries) for s in ("sent", "deferred", "bounced")}
    smtp_conns = [c for c in conns if c and c[0].via == "smtpd"]
    for m in msgs:
        for r in m.rcpts:
            per_rcpt.append({
                "message": m.key, "queue_id": m.queue_id, "from": m.sender,
                "to": r.addr, "transport": r.transport, "attempts": r.attempts,
                **({"delivered_to": r.delivered_to} if r.delivered_to else {}),
                **({"smtpd_reject": {"code": r.reject[0], "dsn": r.reject[1],
                                     "stage": "RCPT", "reason": r.reject[2]}}
                   if r.reject else {}),
            })
    return {
        "deliveries": deliveries,
        "deliveries_by_status": by_status,
        "received": received,
        "received_by_source": received_by,
        "qmgr_envelope_lines": envelope_lines,
        "removed": received,
        "expired": expired,
        "smtpd_rejects": [
            {"code": k[0], "dsn": k[1], "stage": k[2], "reason": k[3], "count": v}
            for k, v in sorted(rejects.items())
        ],
        "smtpd_rejects_total": sum(rejects.values()),
        "smtpd_rejects_with_queue_id": rejects_with_qid,
        "bounce_notifications": notifications,
        "connections": {"smtpd_connect": len(smtp_conns), "smtpd_disconnect": len(smtp_conns)},
        "smtpd_accepted_messages": received_by["smtpd"],
        # postfix-script "starting/stopping the Postfix mail system" and master
        # "daemon started"; master's "terminating on signal 15" is not
        # counted (usually lost, see RE_MASTER_STOP).
        "lifecycle": {"start": 1, "master_start": 1},
        # Sent to postlogd while `postfix stop` is killing it: either line
        # may be missing from maillog_file, so neither is asserted.
        "lifecycle_not_asserted": {
            "stop": "postfix-script: stopping the Postfix mail system (0 or 1)",
            "master_stop": "master: terminating on signal 15 (0 or 1)",
        },
        "recipients": per_rcpt,
        "notifications": notification_list,
    }


# --------------------------------------------------------------------------
# workload execution


def message_bytes(m: Msg) -> bytes:
    to = ", ".join(r.addr for r in m.rcpts)
    return (f"From: {m.sender}\r\nTo: {to}\r\nSubject: lab {m.key}\r\n"
            f"Date: {email.utils.formatdate(localtime=False)}\r\n"
            f"Message-ID: {email.utils.make_msgid(m.key, domain=CLIENT_HELO)}\r\n"
            f"\r\nPostfix lab message {m.key}: {m.note}\r\n").encode()


def smtp_send(s: smtplib.SMTP, m: Msg) -> None:
    code, resp = s.mail(m.sender)
    if code != 250:
        die(f"{m.key}: MAIL FROM refused: {code} {resp!r}")
    accepted = 0
    for r in m.rcpts:
        opts = ["NOTIFY=SUCCESS"] if r.notify_success else []
        code, resp = s.rcpt(r.addr, opts)
        text = resp.decode(errors="replace")
        if r.reject:
            want_code, want_dsn, want_reason = r.reject
            if code != want_code or not text.startswith(want_dsn) or want_reason not in text:
                die(f"{m.key}: RCPT {r.addr}: expected {r.reject}, got {code} {text}")
        elif code != 250:
            die(f"{m.key}: RCPT {r.addr}: expected 250, got {code} {text}")
        else:
            accepted += 1
    if not accepted:
        s.rset()
        return
    code, resp = s.data(message_bytes(m))
    text = resp.decode(errors="replace")
    mo = re.search(r"queued as ([0-9A-Za-z]+)", text)
    if code != 250 or not mo:
        die(f"{m.key}: DATA: {code} {text}")
    m.queue_id = mo.group(1)
    m.submitted_at = time.time()


def sendmail_send(lab: Lab, m: Msg) -> None:
    lab.pf(SENDMAIL, "-f", m.sender, "-i", "--", *[r.addr for r in m.rcpts],
           input=message_bytes(m))
    m.submitted_at = time.time()


def cmd_run_workload(lab: Lab, truth_path: Path | None) -> dict:
    st = lab.load()
    if not lab.master_pid():
        die("Postfix for this lab is not running (start it first)")
    if lab.queue_listing():
        die("queue is not empty; the truth would not hold")
    if lab.journal_counts():
        die(f"sink journal {lab.journal} is not empty: restart the lab")
    t0 = time.monotonic()
    conns = workload()
    msgs = [m for c in conns for m in c]
    by_key = {m.key: m for m in msgs}

    note("phase 1: submitting")
    for conn in conns:
        if conn[0].via == "pickup":
            for m in conn:
                sendmail_send(lab, m)
            continue
        with smtplib.SMTP("127.0.0.1", st["smtpd_port"], local_hostname=CLIENT_HELO,
                          timeout=30) as s:
            s.ehlo()
            for m in conn:
                smtp_send(s, m)

    # Which recipients reach the sink in which phase, from the design.
    def sink_expect(upto_phase: int) -> dict[str, int]:
        exp: dict[str, int] = {}
        for m in msgs:
            for r in m.rcpts:
                if r.transport in ("smtp", "lmtp") and not r.reject:
                    exp[r.addr] = min(len(r.attempts), upto_phase)
        return exp

    def sink_reached(exp: dict[str, int]) -> bool:
        got = lab.journal_counts()
        return all(got.get(a, 0) >= n for a, n in exp.items())

    def queue_is(keys: set[str]) -> bool:
        q = lab.queue_listing()
        want = {by_key[k].queue_id for k in keys}
        return ({e["queue_id"] for e in q} == want
                and all(e["queue_name"] == "deferred" for e in q))

    expire = by_key["expire"]
    wait_until(lambda: sink_reached(sink_expect(1)), 30, "phase-1 sink attempts")
    wait_until(lambda: queue_is({"smtp-deferonce", "lmtp-deferonce", "expire"}), 30,
               "phase 1 to settle (only the three deferred messages queued)")
    note(f"phase 1 done at +{time.monotonic() - t0:.1f}s")

    note("phase 2: postqueue -f (deferonce retries; expiring message not yet expired)")
    lab.pf(POSTQUEUE, "-f")
    wait_until(lambda: sink_reached(sink_expect(2)), 30, "phase-2 sink attempts")
    wait_until(lambda: queue_is({"expire"}), 30, "phase 2 to settle")
    age = time.time() - expire.submitted_at
    if age > QUEUE_LIFETIME - 5:
        die(f"phase 2 finished {age:.1f}s after the expiring message was queued; "
            f"that is too close to maximal_queue_lifetime={QUEUE_LIFETIME}s for the "
            "truth (one more deferral before expiry) to hold. Machine too slow?")
    note(f"phase 2 done at +{time.monotonic() - t0:.1f}s")

    wake = expire.submitted_at + QUEUE_LIFETIME + 2
    note(f"phase 3: waiting {max(0, wake - time.time()):.0f}s for the queue lifetime to pass")
    time.sleep(max(0.0, wake - time.time()))
    lab.pf(POSTQUEUE, "-f")
    wait_until(lambda: sink_reached(sink_expect(3)), 30, "phase-3 sink attempt")
    wait_until(lambda: not lab.queue_listing(), 30, "the queue to empty")
    note(f"phase 3 done at +{time.monotonic() - t0:.1f}s")

    # The sink must have seen exactly the designed attempts, no more.
    got = lab.journal_counts()
    exp = sink_expect(99)
    if dict(got) != exp:
        die(f"sink saw {dict(got)}, design expects {exp}")

    truth = compute_truth(conns)
    truth = {
        "postfix_version": postfix_version(),
        "generator": "tests/lab/postfix_lab.py",
        "queue_lifetime_seconds": QUEUE_LIFETIME,
        "domains": {"local": LOCAL_DOMAIN, "smtp": REMOTE_DOMAIN, "lmtp": LMTP_DOMAIN,
                    "unlisted": UNLISTED_DOMAIN},
        **truth,
    }
    if truth_path:
        truth_path.write_text(json.dumps(truth, indent=2) + "\n")
        note(f"truth written to {truth_path}")
    return truth


def postfix_version() -> str:
    p = subprocess.run([POSTCONF, "-d", "-h", "mail_version"], capture_output=True, text=True)
    return p.stdout.strip()


# --------------------------------------------------------------------------
# log sanity check (independent of the design: greps the log)

_TAG = r"\S+ postfix/(?P<svc>[\w/-]+)\[\d+\]: "
RE_DELIVERY = re.compile(_TAG + r"(?P<qid>\w+): to=<(?P<to>[^>]*)>, (?:orig_to=<(?P<orig>[^>]*)>, )?"
                         r"relay=.*? status=(?P<status>\w+) ")
RE_EXPIRED = re.compile(_TAG + r"\w+: from=<[^>]*>, status=expired, returned to sender$")
RE_CLEANUP = re.compile(_TAG + r"(?P<qid>\w+): message-id=")
RE_SMTPD_CLIENT = re.compile(r"postfix/smtpd\[\d+\]: (?P<qid>\w+): client=")
RE_PICKUP = re.compile(r"postfix/pickup\[\d+\]: (?P<qid>\w+): uid=\d+ from=")
RE_NOTIFY = re.compile(r"postfix/bounce\[\d+\]: \w+: sender (?P<kind>non-delivery|delivery status|delay status) "
                       r"notification: (?P<qid>\w+)$")
RE_ENVELOPE = re.compile(r"postfix/qmgr\[\d+\]: (?P<qid>\w+): from=<[^>]*>, size=\d+, nrcpt=\d+ \(queue active\)$")
RE_REMOVED = re.compile(r"postfix/qmgr\[\d+\]: (?P<qid>\w+): removed$")
RE_REJECT = re.compile(r"postfix/smtpd\[\d+\]: (?P<qid>\w+): reject: (?P<stage>[\w-]+) from \S+: "
                       r"(?P<code>\d{3}) (?P<dsn>\d\.\d+\.\d+) <[^>]*>: (?P<reason>[^;]+);")
RE_CONNECT = re.compile(r"postfix/smtpd\[\d+\]: connect from ")
RE_DISCONNECT = re.compile(r"postfix/smtpd\[\d+\]: disconnect from ")
RE_START = re.compile(r"postfix/postfix-script\[\d+\]: starting the Postfix mail system$")
RE_MASTER_START = re.compile(r"postfix/master\[\d+\]: daemon started -- version ")
RE_STOP = re.compile(r"postfix/postfix-script\[\d+\]: stopping the Postfix mail system$")
# master logs this after it has signalled its process group, postlogd
# included, so with maillog_file the line is usually lost: not counted.
RE_MASTER_STOP = re.compile(r"postfix/master\[\d+\]: terminating on signal")
RE_DIAG = re.compile(_TAG + r"(?P<sev>warning|error|fatal|panic): ")

NOTIFY_KIND = {"non-delivery": "non_delivery", "delivery status": "success", "delay status": "delay"}


def observe_log(text: str) -> dict:
    deliveries: dict = {t: {"sent": 0, "deferred": 0, "bounced": 0} for t in ("smtp", "lmtp", "local")}
    attempts: dict = collections.defaultdict(list)
    rejects: collections.Counter = collections.Counter()
    rejects_with_qid = 0
    notes = {"non_delivery": 0, "delay": 0, "success": 0}
    cleanup_ids, envelope, removed = set(), 0, 0
    smtpd_ids, pickup_ids, note_ids = set(), set(), set()
    c = collections.Counter()
    diags = []
    for line in text.splitlines():
        if m := RE_DELIVERY.search(line):
            svc, status = m["svc"], m["status"]
            deliveries.setdefault(svc, {"sent": 0, "deferred": 0, "bounced": 0})
            deliveries[svc].setdefault(status, 0)
            deliveries[svc][status] += 1
            attempts[(m["orig"] or m["to"]).lower()].append(status)
        elif RE_EXPIRED.search(line):
            c["expired"] += 1
        elif m := RE_CLEANUP.search(line):
            cleanup_ids.add(m["qid"])
        elif m := RE_SMTPD_CLIENT.search(line):
            smtpd_ids.add(m["qid"])
        elif m := RE_PICKUP.search(line):
            pickup_ids.add(m["qid"])
        elif m := RE_NOTIFY.search(line):
            notes[NOTIFY_KIND[m["kind"]]] += 1
            note_ids.add(m["qid"])
        elif RE_ENVELOPE.search(line):
            envelope += 1
        elif RE_REMOVED.search(line):
            removed += 1
        elif m := RE_REJECT.search(line):
            rejects[(int(m["code"]), m["dsn"], m["stage"], m["reason"].strip())] += 1
            if m["qid"] != "NOQUEUE":
                rejects_with_qid += 1
        elif RE_CONNECT.search(line):
            c["connect"] += 1
        elif RE_DISCONNECT.search(line):
            c["disconnect"] += 1
        elif RE_START.search(line):
            c["start"] += 1
        elif RE_MASTER_START.search(line):
            c["master_start"] += 1
        elif RE_STOP.search(line):
            c["stop"] += 1
        elif RE_MASTER_STOP.search(line):
            c["master_stop"] += 1
        if m := RE_DIAG.search(line):
            diags.append(line)
    return {
        "deliveries": deliveries,
        "attempts": dict(attempts),
        "received": len(cleanup_ids),
        "received_by_source": {"smtpd": len(smtpd_ids), "pickup": len(pickup_ids),
                               "bounce": len(note_ids)},
        "qmgr_envelope_lines": envelope,
        "removed": removed,
        "expired": c["expired"],
        "smtpd_rejects": [
            {"code": k[0], "dsn": k[1], "stage": k[2], "reason": k[3], "count": v}
            for k, v in sorted(rejects.items())
        ],
        "smtpd_rejects_with_queue_id": rejects_with_qid,
        "bounce_notifications": notes,
        "connections": {"smtpd_connect": c["connect"], "smtpd_disconnect": c["disconnect"]},
        "lifecycle": {"start": c["start"], "master_start": c["master_start"]},
        "lifecycle_stop": {"stop": c["stop"], "master_stop": c["master_stop"]},
        "diagnostics": diags,
    }


def check_log(truth: dict, log_text: str) -> list[str]:
    """Compare the design truth with what a grep of the log finds.
    Returns a list of human-readable disagreements."""
    obs = observe_log(log_text)
    errs = []
    for key in ("deliveries", "received", "received_by_source", "qmgr_envelope_lines",
                "removed", "expired", "smtpd_rejects", "smtpd_rejects_with_queue_id",
                "bounce_notifications", "connections", "lifecycle"):
        if truth[key] != obs[key]:
            errs.append(f"{key}: design says {json.dumps(truth[key])}, "
                        f"log shows {json.dumps(obs[key])}")
    # Per recipient address: the statuses logged for it, in log order.
    # An address that several messages go to (the lab user gets ordinary
    # mail and every notification) is compared as a multiset.
    want_attempts: dict = collections.defaultdict(list)
    sources: collections.Counter = collections.Counter()
    for r in truth["recipients"] + truth["notifications"]:
        if r.get("smtpd_reject"):
            continue
        want_attempts[r["to"].lower()] += r["attempts"]
        sources[r["to"].lower()] += 1
    for addr, att in want_attempts.items():
        got = obs["attempts"].get(addr)
        if sources[addr] > 1:
            att, got = sorted(att), sorted(got or [])
        if got != att:
            errs.append(f"recipient {addr}: design says attempts {att}, log shows {got}")
    extra = set(obs["attempts"]) - set(want_attempts)
    if extra:
        errs.append(f"log has deliveries to recipients not in the design: {sorted(extra)}")
    for k, v in obs["lifecycle_stop"].items():
        if v > 1:
            errs.append(f"lifecycle {k}: logged {v} times, expected at most once")
    bad = [d for d in obs["diagnostics"] if re.search(r": (fatal|panic|error): ", d)]
    for d in bad:
        errs.append(f"log has a fatal/panic/error line: {d}")
    for d in obs["diagnostics"]:
        if d not in bad:
            note(f"warning line in log: {d}")
    return errs


# --------------------------------------------------------------------------
# CLI


def _terminate(signum, frame):
    # Turn SIGTERM/SIGHUP into an exception so that `finally: stop` runs.
    raise SystemExit(f"postfix_lab: interrupted by signal {signum}")


def cmd_run(args) -> None:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="postfix-lab-"))
    lab = Lab(base)
    t0 = time.monotonic()
    truth = None
    try:
        cmd_setup(lab, args.smtpd_port)
        cmd_start(lab)
        truth = cmd_run_workload(lab, None)
        time.sleep(1)  # let postlogd write the last lines
    finally:
        cmd_stop(lab)
    log_text = lab.maillog.read_text()
    errs = check_log(truth, log_text)
    elapsed = time.monotonic() - t0
    if args.out_log:
        shutil.copyfile(lab.maillog, args.out_log)
        note(f"log copied to {args.out_log}")
    if args.out_truth:
        Path(args.out_truth).write_text(json.dumps(truth, indent=2) + "\n")
        note(f"truth written to {args.out_truth}")
    note(f"lab run took {elapsed:.1f}s; lab directory {lab.root}")
    if errs:
        for e in errs:
            print(f"postfix_lab: MISMATCH: {e}", file=sys.stderr)
        die(f"{len(errs)} disagreement(s) between the workload design and the log")
    note("log agrees with the design truth")
    if not args.keep and not args.dir:
        shutil.rmtree(lab.root, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description="Private Postfix lab on loopback")
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("setup", "start", "stop", "status", "run-workload", "check-log"):
        sp = sub.add_parser(name)
        sp.add_argument("--dir", required=name != "check-log", help="lab directory")
        if name == "check-log":
            sp.add_argument("--log", help="log file to check (default: DIR/maillog)")
        if name == "setup":
            sp.add_argument("--smtpd-port", type=int)
        if name in ("run-workload", "check-log"):
            sp.add_argument("--truth", help="truth JSON to write (run-workload) or read (check-log)")
    sp = sub.add_parser("run", help="setup, start, run-workload, stop, check")
    sp.add_argument("--dir", help="lab directory (default: a new temporary one)")
    sp.add_argument("--smtpd-port", type=int)
    sp.add_argument("--out-log", help="copy the maillog here")
    sp.add_argument("--out-truth", help="write the truth JSON here")
    sp.add_argument("--keep", action="store_true", help="keep the temporary lab directory")
    args = p.parse_args()

    if args.cmd == "run":
        cmd_run(args)
        return 0
    if args.cmd == "check-log":
        if not args.truth or not (args.log or args.dir):
            die("check-log needs --truth and --log or --dir")
        log = Path(args.log) if args.log else Lab(Path(args.dir)).maillog
        errs = check_log(json.loads(Path(args.truth).read_text()), log.read_text())
        for e in errs:
            print(f"postfix_lab: MISMATCH: {e}", file=sys.stderr)
        if errs:
            return 1
        note(f"{log} agrees with {args.truth}")
        return 0
    lab = Lab(Path(args.dir))
    if args.cmd == "setup":
        cmd_setup(lab, args.smtpd_port)
    elif args.cmd == "start":
        signal.signal(signal.SIGTERM, _terminate)
        try:
            cmd_start(lab)
        except BaseException:
            cmd_stop(lab)
            raise
    elif args.cmd == "stop":
        cmd_stop(lab)
    elif args.cmd == "status":
        st = lab.load()
        st["master_running"] = bool(lab.master_pid())
        st["processes"] = lab.our_processes()
        st["queue"] = lab.queue_listing() if st["master_running"] else None
        print(json.dumps(st, indent=2))
    elif args.cmd == "run-workload":
        cmd_run_workload(lab, Path(args.truth) if args.truth else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
