#!/usr/bin/env python3
"""Loopback SMTP + LMTP sink for the Postfix lab.

The reply to each RCPT depends only on the recipient's local part
(case-insensitive prefix match, first rule that matches wins):

    deferonce*        451 4.3.0 the first time this exact address is seen
                      (over either protocol), 250 afterwards
    defer*, temp*     451 4.3.0 always
    reject*, nouser*  550 5.1.1 always
    ok*, anything else 250

SMTP: one reply per RCPT, one reply after the message data.
LMTP: one reply per RCPT, and after the data one reply per accepted
recipient, in RCPT order (RFC 2033).

The sink writes nothing to the Postfix log. With --journal FILE it appends
one JSON object per RCPT decision (proto, rcpt, code), which the lab uses to
know when a delivery attempt has happened. It prints "ready" on stdout once
both listeners are bound.

Python 3.11 standard library only.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sys

HOSTNAME = "sink.lab.test"
_ADDR_RE = re.compile(r"<([^>]*)>")


def decide(rcpt: str, seen: set[str]) -> tuple[int, str]:
    """Return (code, text) for a recipient address (already unbracketed)."""
    addr = rcpt.strip().lower()
    local = addr.split("@", 1)[0]
    if local.startswith("deferonce"):
        if addr not in seen:
            seen.add(addr)
            return 451, f"4.3.0 <{rcpt}>: deferring once, try again later"
        return 250, f"2.1.5 <{rcpt}>: recipient ok (second attempt)"
    if local.startswith("defer") or local.startswith("temp"):
        return 451, f"4.3.0 <{rcpt}>: temporary failure, try again later"
    if local.startswith("reject") or local.startswith("nouser"):
        return 550, f"5.1.1 <{rcpt}>: no such user here"
    return 250, f"2.1.5 <{rcpt}>: recipient ok"


class Sink:
    def __init__(self, journal: str | None):
        self.seen: set[str] = set()  # deferonce addresses already deferred
        self.journal = open(journal, "a", buffering=1) if journal else None

    def record(self, proto: str, rcpt: str, code: int) -> None:
        if self.journal:
            self.journal.write(json.dumps({"proto": proto, "rcpt": rcpt, "code": code}) + "\n")

    async def session(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter, lmtp: bool) -> None:
        proto = "lmtp" if lmtp else "smtp"

        async def reply(*lines: str) -> None:
            writer.write("".join(l + "\r\n" for l in lines).encode())
            await writer.drain()

        mail_from: str | None = None
        accepted: list[str] = []
        greeted = False
        await reply(f"220 {HOSTNAME} {proto.upper()} lab sink ready")
        try:
            while True:
                raw = await reader.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO", "LHLO"):
                    if lmtp != (verb == "LHLO"):
                        await reply(f"500 5.5.1 {verb} not valid for {proto.upper()}")
                        continue
                    greeted = True
                    mail_from, accepted = None, []
                    if verb == "HELO":
                        await reply(f"250 {HOSTNAME}")
                    else:
                        await reply(f"250-{HOSTNAME}", "250-PIPELINING",
                                    "250-8BITMIME", "250-ENHANCEDSTATUSCODES",
                                    "250 SIZE 104857600")
                elif verb == "MAIL":
                    if not greeted:
                        await reply("503 5.5.1 Say hello first")
                    elif mail_from is not None:
                        await reply("503 5.5.1 Nested MAIL command")
                    else:
                        m = _ADDR_RE.search(line)
                        mail_from = m.group(1) if m else ""
                        accepted = []
                        await reply("250 2.1.0 Sender ok")
                elif verb == "RCPT":
                    if mail_from is None:
                        await reply("503 5.5.1 Need MAIL first")
                        continue
                    m = _ADDR_RE.search(line)
                    if not m:
                        await reply("501 5.1.3 Bad recipient address syntax")
                        continue
                    rcpt = m.group(1)
                    code, text = decide(rcpt, self.seen)
                    self.record(proto, rcpt, code)
                    if code == 250:
                        accepted.append(rcpt)
                    await reply(f"{code} {text}")
                elif verb == "DATA":
                    if mail_from is None or not accepted:
                        await reply("554 5.5.1 No valid recipients")
                        continue
                    await reply("354 End data with <CR><LF>.<CR><LF>")
                    while True:
                        chunk = await reader.readline()
                        if not chunk:
                            return
                        if chunk.rstrip(b"\r\n") == b".":
                            break
                    if lmtp:
                        await reply(*[f"250 2.0.0 <{r}> delivered to lab sink"
                                      for r in accepted])
                    else:
                        await reply("250 2.0.0 Ok: queued in lab sink")
                    mail_from, accepted = None, []
                elif verb == "RSET":
                    mail_from, accepted = None, []
                    await reply("250 2.0.0 Ok")
                elif verb == "NOOP":
                    await reply("250 2.0.0 Ok")
                elif verb == "QUIT":
                    await reply("221 2.0.0 Bye")
                    return
                else:
                    await reply("502 5.5.2 Command not implemented")
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            try:
                writer.close()
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


async def main_async(args: argparse.Namespace) -> None:
    sink = Sink(args.journal)
    smtp = await asyncio.start_server(
        lambda r, w: sink.session(r, w, lmtp=False), args.host, args.smtp_port)
    lmtp = await asyncio.start_server(
        lambda r, w: sink.session(r, w, lmtp=True), args.host, args.lmtp_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    async with smtp, lmtp:
        await stop.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smtp-port", type=int, required=True)
    p.add_argument("--lmtp-port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--journal", help="append one JSON line per RCPT decision")
    args = p.parse_args()
    asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
