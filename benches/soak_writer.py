#!/usr/bin/env python3
"""Append realistic Postfix log lines to a file at a steady rate, rotating it.

Used by benches/soak.sh. Each message goes through the shapes a real
Postfix logs (smtpd connect/client, cleanup message-id, qmgr envelope,
smtp/lmtp/local delivery, qmgr removed, smtpd disconnect); some recipients
are deferred first and delivered later, some messages bounce with a
notification, some connections are rejected. Queue ids are unique, so the
exporter's per-message state sees real churn.

Rotation is logrotate's `create`: rename FILE to FILE.1 (replacing the
previous FILE.1), create FILE and continue there. With --late-lines N, N
more lines go to the renamed file after the new one exists (a writer that
reopens a little later, like a syslog daemon on logrotate's postrotate HUP).

At the end the number of lines written is printed on stdout (and to
--count-file). Python 3 standard library only.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time

TICK = 0.01  # seconds between writes


class Lines:
    """Generates Postfix lines, message after message."""

    def __init__(self) -> None:
        self.n = 0
        self.deferred: collections.deque = collections.deque()
        self.stamp_at = -1
        self.stamp = ""

    def ts(self) -> str:
        now = int(time.time())
        if now != self.stamp_at:
            self.stamp_at = now
            self.stamp = time.strftime("%b %e %H:%M:%S", time.localtime(now))
        return self.stamp

    def message(self) -> list[str]:
        """The lines of one SMTP session (and any retry due)."""
        self.n += 1
        n = self.n
        t = self.ts()
        qid = f"{0x100000000 + n * 7:X}"  # unique, Postfix-style hex
        k = n % 251
        pid = 10000 + n % 500
        client = f"client{k}.example.net[192.0.2.{k}]"
        out = []
        if n % 15 == 0:
            # A rejected client, no queue id.
            out.append(f"{t} mx postfix/smtpd[{pid}]: connect from {client}")
            out.append(f"{t} mx postfix/smtpd[{pid}]: NOQUEUE: reject: RCPT from {client}: "
                       f"554 5.7.1 <u{k}@elsewhere.test>: Relay access denied; "
                       f"from=<s{k}@example.net> to=<u{k}@elsewhere.test> proto=ESMTP helo=<client{k}>")
            out.append(f"{t} mx postfix/smtpd[{pid}]: disconnect from {client} "
                       "ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4")
            return out
        out.append(f"{t} mx postfix/smtpd[{pid}]: connect from {client}")
        out.append(f"{t} mx postfix/smtpd[{pid}]: {qid}: client={client}")
        out.append(f"{t} mx postfix/cleanup[{pid + 1}]: {qid}: message-id=<{n}.{qid}@example.net>")
        out.append(f"{t} mx postfix/qmgr[999]: {qid}: from=<s{k}@example.net>, size={1000 + 37 * k}, "
                   "nrcpt=1 (queue active)")
        out.append(f"{t} mx postfix/smtpd[{pid}]: disconnect from {client} "
                   "ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5")
        kind = n % 20
        if kind == 7:
            out.append(f"{t} mx postfix/smtp[{pid + 2}]: {qid}: to=<u{k}@remote.example>, "
                       "relay=mx.remote.example[198.51.100.7]:25, delay=0.31, delays=0.01/0/0.2/0.1, "
                       "dsn=4.3.0, status=deferred (host mx.remote.example[198.51.100.7] said: "
                       "451 4.3.0 try again later (in reply to RCPT TO command))")
            self.deferred.append((qid, k))
            return out
        if kind == 11:
            bqid = f"{0x100000000 + n * 7 + 3:X}"
            out.append(f"{t} mx postfix/smtp[{pid + 2}]: {qid}: to=<nouser{k}@remote.example>, "
                       "relay=mx.remote.example[198.51.100.7]:25, delay=0.4, delays=0.01/0/0.2/0.19, "
                       "dsn=5.1.1, status=bounced (host mx.remote.example[198.51.100.7] said: "
                       "550 5.1.1 no such user (in reply to RCPT TO command))")
            out.append(f"{t} mx postfix/cleanup[{pid + 1}]: {bqid}: message-id=<{n}.{bqid}@mx.example.net>")
            out.append(f"{t} mx postfix/bounce[{pid + 3}]: {qid}: sender non-delivery notification: {bqid}")
            out.append(f"{t} mx postfix/qmgr[999]: {bqid}: from=<>, size=3000, nrcpt=1 (queue active)")
            out.append(f"{t} mx postfix/local[{pid + 4}]: {bqid}: to=<s{k}@example.net>, relay=local, "
                       "delay=0.01, delays=0/0/0/0.01, dsn=2.0.0, status=sent (delivered to mailbox)")
            out.append(f"{t} mx postfix/qmgr[999]: {bqid}: removed")
        elif kind in (3, 13):
            out.append(f"{t} mx postfix/lmtp[{pid + 2}]: {qid}: to=<u{k}@lmtp.example>, "
                       "relay=127.0.0.1[127.0.0.1]:24, delay=0.05, delays=0.01/0/0.01/0.03, "
                       "dsn=2.0.0, status=sent (250 2.0.0 Ok)")
        else:
            out.append(f"{t} mx postfix/smtp[{pid + 2}]: {qid}: to=<u{k}@remote.example>, "
                       "relay=mx.remote.example[198.51.100.7]:25, delay=0.52, "
                       "delays=0.1/0.01/0.2/0.21, dsn=2.0.0, "
                       "status=sent (250 2.0.0 Ok: queued as 4XyZ1234)")
        out.append(f"{t} mx postfix/qmgr[999]: {qid}: removed")
        # Retry a deferred message once a few dozen messages later.
        if len(self.deferred) > 30:
            dq, dk = self.deferred.popleft()
            out.append(f"{t} mx postfix/qmgr[999]: {dq}: from=<s{dk}@example.net>, size={1000 + 37 * dk}, "
                       "nrcpt=1 (queue active)")
            out.append(f"{t} mx postfix/smtp[{pid + 2}]: {dq}: to=<u{dk}@remote.example>, "
                       "relay=mx.remote.example[198.51.100.7]:25, delay=61, delays=60/0.01/0.2/0.8, "
                       "dsn=2.0.0, status=sent (250 2.0.0 Ok)")
            out.append(f"{t} mx postfix/qmgr[999]: {dq}: removed")
        return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", required=True)
    p.add_argument("--rate", type=float, default=20000, help="lines per second")
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--rotate-every", type=float, default=60, help="seconds; 0: never")
    p.add_argument("--late-lines", type=int, default=0,
                   help="lines written to the renamed file after the new one exists")
    p.add_argument("--count-file", help="also write the line count here")
    p.add_argument("--sample", type=int, help="print N lines to stdout and exit")
    a = p.parse_args()

    gen = Lines()
    if a.sample:
        buf: list[str] = []
        while len(buf) < a.sample:
            buf.extend(gen.message())
        sys.stdout.write("\n".join(buf[: a.sample]) + "\n")
        return 0

    f = open(a.path, "a", buffering=1 << 20)
    pending: collections.deque = collections.deque()
    written = 0
    rotations = 0
    start = time.monotonic()
    last_rotation = start
    end = start + a.seconds
    while True:
        now = time.monotonic()
        if now >= end:
            break
        due = int((now - start) * a.rate) - written
        if due > 0:
            while len(pending) < due:
                pending.extend(gen.message())
            chunk = [pending.popleft() for _ in range(due)]
            f.write("\n".join(chunk) + "\n")
            f.flush()
            written += due
        if a.rotate_every and now - last_rotation >= a.rotate_every:
            os.replace(a.path, a.path + ".1")
            nf = open(a.path, "a", buffering=1 << 20)
            # --late-lines: the old file still gets lines after the new one
            # exists, as with a syslog daemon that reopens on the
            # postrotate HUP, a little after logrotate's `create`.
            late = 0
            while late < a.late_lines:
                while not pending:
                    pending.extend(gen.message())
                f.write(pending.popleft() + "\n")
                late += 1
            f.close()
            written += late
            f = nf
            rotations += 1
            last_rotation = now
        time.sleep(max(0.0, TICK - (time.monotonic() - now)))
    # Whole messages only are not needed: every line stands alone, and the
    # exporter counts lines. Flush what is due and stop.
    f.close()
    elapsed = time.monotonic() - start
    print(f"{written}", flush=True)
    if a.count_file:
        with open(a.count_file, "w") as cf:
            cf.write(f"{written}\n")
    print(f"soak_writer: {written} lines in {elapsed:.1f}s ({written / elapsed:.0f}/s), "
          f"{rotations} rotations", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
