#!/usr/bin/env python3
"""Writes the Grafana dashboards maillog-overview.json and maillog-postfix.json.

The JSON files are the deliverable (import them into Grafana); this script is
how they are made, so panels stay consistent (same selectors, units, layout).
Edit the panels here and run it again:

    python3 dashboards/generate.py          # rewrite the JSON files
    python3 dashboards/generate.py --check  # fail if they are out of date

Only metrics of docs/metrics.md are used; the test suite (tests/dashboards.rs)
checks every expression against the exporter's real output.
"""

import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}

# Label selectors. Every query filters on the dashboard's variables; nothing
# names a fixed instance or job.
BASE = 'job=~"$job", instance=~"$instance"'
MTA = BASE + ', mta=~"$mta"'
TRANSPORT = MTA + ', transport=~"$transport"'
RI = "$__rate_interval"


def rate(metric, sel, by=None, extra=""):
    inner = f"rate({metric}{{{sel}{extra}}}[{RI}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q, metric, sel, by, extra=""):
    return (
        f"histogram_quantile({q}, sum by ({by}, le) "
        f"(rate({metric}_bucket{{{sel}{extra}}}[{RI}])))"
    )


def mean(metric, sel, by):
    """Mean of a histogram: rate of its sum over rate of its count."""
    return f"{rate(metric + '_sum', sel, by=by)} / {rate(metric + '_count', sel, by=by)}"


def t(expr, legend):
    return {"expr": expr, "legendFormat": legend}


class Layout:
    """Places panels left to right, 24 columns wide, and numbers them."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        self._newline()
        self.panels.append(
            {
                "id": self._id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self):
        if self.x:
            self.y += self.row_h
            self.x = 0
            self.row_h = 0

    def _place(self, w, h):
        if self.x + w > 24:
            self._newline()
        pos = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        return pos

    def _targets(self, targets, instant=False):
        out = []
        for i, tg in enumerate(targets):
            out.append(
                {
                    "datasource": DS,
                    "expr": tg["expr"],
                    "legendFormat": tg["legendFormat"],
                    "refId": chr(ord("A") + i),
                    "range": not instant,
                    "instant": instant,
                }
            )
        return out

    def ts(self, title, description, targets, unit="cps", w=12, h=8, stack=False, bars=False):
        custom = {
            "drawStyle": "bars" if bars else "line",
            "lineWidth": 1,
            "fillOpacity": 60 if bars else 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        }
        self.panels.append(
            {
                "id": self._id(),
                "type": "timeseries",
                "title": title,
                "description": description,
                "datasource": DS,
                "gridPos": self._place(w, h),
                "fieldConfig": {
                    "defaults": {"unit": unit, "min": 0, "custom": custom},
                    "overrides": [],
                },
                "options": {
                    "legend": {
                        "displayMode": "table",
                        "placement": "bottom",
                        "calcs": ["mean", "max", "lastNotNull"],
                    },
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
                "targets": self._targets(targets),
            }
        )

    def stat(self, title, description, targets, unit="short", w=4, h=4, thresholds=None, mappings=None):
        steps = [{"color": "green", "value": None}]
        for value, color in thresholds or []:
            steps.append({"color": color, "value": value})
        self.panels.append(
            {
                "id": self._id(),
                "type": "stat",
                "title": title,
                "description": description,
                "datasource": DS,
                "gridPos": self._place(w, h),
                "fieldConfig": {
                    "defaults": {
                        "unit": unit,
                        "thresholds": {"mode": "absolute", "steps": steps},
                        "mappings": mappings or [],
                    },
                    "overrides": [],
                },
                "options": {
                    "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value",
                    "graphMode": "area",
                    "justifyMode": "auto",
                    "orientation": "auto",
                    "textMode": "auto",
                },
                "targets": self._targets(targets, instant=True),
            }
        )


def variable(name, label, query, all_value=".*"):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": True,
        "allValue": all_value,
        "current": {},
        "options": [],
        "regex": "",
        "sort": 1,
        "hide": 0,
    }


def templating(mta_query):
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {"selected": False, "text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
                "options": [],
                "refresh": 1,
                "regex": "",
                "hide": 0,
            },
            variable("job", "Job", "label_values(maillog_exporter_build_info, job)"),
            variable("instance", "Instance", 'label_values(maillog_exporter_build_info{job=~"$job"}, instance)'),
            variable("mta", "MTA", mta_query),
            variable(
                "transport",
                "Transport",
                'label_values(mail_deliveries_total{job=~"$job", instance=~"$instance", mta=~"$mta"}, transport)',
            ),
        ]
    }


def dashboard(uid, title, description, layout, mta_query, annotations=(), links=()):
    panel_types = sorted({p["type"] for p in layout.panels if p["type"] != "row"})
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "The Prometheus that scrapes maillog_exporter",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "10.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
        ]
        + [{"type": "panel", "id": p, "name": p, "version": ""} for p in panel_types],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
            + list(annotations)
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": list(links),
        "panels": layout.panels,
        "refresh": "1m",
        "schemaVersion": 39,
        "tags": ["mail", "maillog_exporter"],
        "templating": templating(mta_query),
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
    }


def link(title, uid_tag):
    return {
        "title": title,
        "type": "dashboards",
        "tags": [uid_tag],
        "asDropdown": False,
        "includeVars": True,
        "keepTime": True,
        "icon": "dashboard",
    }


def overview():
    L = Layout()
    L.row("Mail flow")
    L.stat(
        "Received",
        "Messages entering the queue per second.",
        [t(rate("mail_messages_received_total", MTA), "received")],
        unit="cps",
    )
    L.stat(
        "Sent",
        "Successful deliveries per second (transport filter applies).",
        [t(rate("mail_deliveries_total", TRANSPORT, extra=', status="sent"'), "sent")],
        unit="cps",
    )
    L.stat(
        "Deferred ratio (30m)",
        "Share of delivery attempts deferred over 30 minutes, from the recording rule "
        "instance_mta:mail_deliveries_deferred:ratio_rate30m (the MailDeferredRatioHigh alert fires above 20%).",
        [t(f"max(instance_mta:mail_deliveries_deferred:ratio_rate30m{{{MTA}}})", "deferred")],
        unit="percentunit",
        thresholds=[(0.1, "orange"), (0.2, "red")],
    )
    L.stat(
        "Bounce ratio (30m)",
        "Share of final outcomes (sent + bounced) that bounced over 30 minutes, from the recording rule "
        "instance_mta:mail_deliveries_bounced:ratio_rate30m (the MailBounceRatioHigh alert fires above 10%).",
        [t(f"max(instance_mta:mail_deliveries_bounced:ratio_rate30m{{{MTA}}})", "bounced")],
        unit="percentunit",
        thresholds=[(0.05, "orange"), (0.1, "red")],
    )
    L.stat(
        "Messages in queue",
        "Messages seen entering the queue and not yet removed (the exporter's view of the queue).",
        [t(f"sum(mail_queue_messages{{{MTA}}})", "queue")],
        thresholds=[(100, "orange"), (1000, "red")],
    )
    L.stat(
        "Sources down",
        "Log sources that are missing or unreadable (maillog_source_up == 0).",
        [t(f"count(maillog_source_up{{{BASE}}} == 0) or vector(0)", "down")],
        thresholds=[(1, "red")],
    )
    L.ts(
        "Mail flow",
        "Messages received, delivery attempts by status, and messages expired (returned after the maximal queue lifetime).",
        [
            t(rate("mail_messages_received_total", MTA, by="mta"), "{{mta}} received"),
            t(rate("mail_deliveries_total", TRANSPORT, by="mta, status"), "{{mta}} {{status}}"),
            t(rate("mail_messages_expired_total", MTA, by="mta"), "{{mta}} expired"),
        ],
    )
    L.ts(
        "Deliveries by transport and status",
        "Delivery status lines per second by delivery agent (smtp, lmtp, local, …) and status.",
        [t(rate("mail_deliveries_total", TRANSPORT, by="mta, transport, status"), "{{mta}} {{transport}} {{status}}")],
    )
    L.ts(
        "Deferred and bounce ratios (30m)",
        "From the recording rules that the alerts use: deferred / all attempts and bounced / (sent + bounced), "
        "over 30 minutes. Not split by transport.",
        [
            t(f"instance_mta:mail_deliveries_deferred:ratio_rate30m{{{MTA}}}", "{{instance}} {{mta}} deferred"),
            t(f"instance_mta:mail_deliveries_bounced:ratio_rate30m{{{MTA}}}", "{{instance}} {{mta}} bounced"),
        ],
        unit="percentunit",
    )
    L.ts(
        "Messages in queue",
        "Messages seen entering the queue and not yet removed. Messages queued before the exporter started "
        "are counted once they are seen.",
        [t(f"sum by (instance, mta) (mail_queue_messages{{{MTA}}})", "{{instance}} {{mta}}")],
        unit="short",
    )

    L.row("Delays")
    L.ts(
        "Delivery delay of sent mail",
        "p50, p95 and p99 of the time from arrival to delivery (Postfix delay=), from the histogram buckets.",
        [
            t(quantile(q, "mail_delivery_delay_seconds", TRANSPORT, "mta", ', status="sent"'), f"{{{{mta}}}} p{int(q * 100)}")
            for q in (0.5, 0.95, 0.99)
        ],
        unit="s",
        w=8,
    )
    L.ts(
        "Time in queue",
        "p50 and p95 of the time from arrival to removal from the queue.",
        [
            t(quantile(q, "mail_message_queue_seconds", MTA, "mta"), f"{{{{mta}}}} p{int(q * 100)}")
            for q in (0.5, 0.95)
        ],
        unit="s",
        w=8,
    )
    L.ts(
        "Attempts per recipient",
        "Mean and p95 of delivery attempts per recipient at its final outcome (1 = delivered on the first try; "
        "the p95 is interpolated within buckets).",
        [
            t(mean("mail_delivery_attempts", TRANSPORT, "mta"), "{{mta}} mean"),
            t(quantile(0.95, "mail_delivery_attempts", TRANSPORT, "mta"), "{{mta}} p95"),
        ],
        unit="short",
        w=8,
    )

    L.row("SMTP")
    L.ts(
        "SMTP connections by service",
        "Connections accepted per second by service (smtpd, submission, smtps, postscreen, …).",
        [t(rate("mail_smtp_connections_total", MTA, by="mta, service"), "{{mta}} {{service}}")],
        w=8,
    )
    L.ts(
        "TLS sessions",
        "TLS sessions established per second: inbound (server) and outbound (client).",
        [t(rate("mail_smtp_tls_connections_total", MTA, by="mta, direction"), "{{mta}} {{direction}}")],
        w=8,
    )
    L.ts(
        "AUTH failures",
        "Failed SMTP AUTH per second by service and mechanism (the MailAuthFailureBurst alert fires above 0.1/s).",
        [t(rate("mail_auth_failures_total", MTA, by="mta, service, mechanism"), "{{mta}} {{service}} {{mechanism}}")],
        w=8,
    )
    L.ts(
        "Rejects by SMTP code",
        "Rejected commands or messages per second by reply code.",
        [t(rate("mail_smtp_rejects_total", MTA, by="mta, code"), "{{mta}} {{code}}")],
        w=8,
        stack=True,
    )
    L.ts(
        "Rejects by stage",
        "Rejected commands or messages per second by the SMTP stage they were rejected at.",
        [t(rate("mail_smtp_rejects_total", MTA, by="mta, stage"), "{{mta}} {{stage}}")],
        w=8,
        stack=True,
    )
    L.ts(
        "Outbound connection errors",
        "Failed outbound connection attempts per second by transport and error.",
        [t(rate("mail_smtp_outbound_connect_errors_total", TRANSPORT, by="mta, transport, error"), "{{mta}} {{transport}} {{error}}")],
        w=8,
    )

    L.row("Anti-spam")
    L.ts(
        "Spam verdicts by reason",
        "Decisions of anti-spam filters per second (postscreen for Postfix). Not filtered by MTA: verdicts carry a "
        "`filter` label instead.",
        [t(rate("mail_spam_verdicts_total", BASE, by="filter, verdict, reason"), "{{filter}} {{verdict}} {{reason}}")],
        stack=True,
    )
    L.ts(
        "Denied share of verdicts",
        "Denied / all verdicts per filter.",
        [
            t(
                rate("mail_spam_verdicts_total", BASE, by="filter", extra=', verdict="denied"')
                + " / "
                + rate("mail_spam_verdicts_total", BASE, by="filter"),
                "{{filter}}",
            )
        ],
        unit="percentunit",
    )

    L.row("Exporter health")
    L.stat(
        "Exporter up",
        "Whether Prometheus can scrape the exporter (up).",
        [t(f"min(up{{{BASE}}})", "up")],
        w=4,
        thresholds=[],
        mappings=[
            {"type": "value", "options": {"0": {"text": "down", "color": "red"}, "1": {"text": "up", "color": "green"}}}
        ],
    )
    L.stat(
        "Tracked messages",
        "Messages held by the per-message correlator (capped by --state.max-messages).",
        [t(f"sum(maillog_tracked_messages{{{BASE}}})", "tracked")],
        w=4,
    )
    L.ts(
        "Sources up",
        "1 while a source's file is open and readable, 0 while it is missing or unreadable.",
        [t(f"maillog_source_up{{{BASE}}}", "{{instance}} {{source}}")],
        unit="short",
        w=8,
        h=4,
    )
    L.ts(
        "Seconds since the last line",
        "Age of the newest line read, from the time written in it (classic syslog stamps carry no time zone: an offset "
        "here can be the log's time zone).",
        [t(f"time() - maillog_last_line_timestamp_seconds{{{BASE}}}", "{{instance}} {{source}}")],
        unit="s",
        w=8,
        h=4,
    )
    L.ts(
        "Lines read by source and result",
        "Lines per second: parsed (the MTA's own lines), ignored (other programs in the same file), unparsed.",
        [t(rate("maillog_lines_total", BASE, by="instance, source, result"), "{{instance}} {{source}} {{result}}")],
        w=8,
    )
    L.ts(
        "Unparsed ratio by format (30m)",
        "unparsed / (parsed + unparsed) per source and format, from the recording rule "
        "instance_source_format:maillog_lines_unparsed:ratio_rate30m (MaillogUnparsedRatioHigh fires above 1%).",
        [t(f"instance_source_format:maillog_lines_unparsed:ratio_rate30m{{{BASE}}}", "{{format}} {{source}}")],
        unit="percentunit",
        w=8,
    )
    L.ts(
        "Tracked messages and evictions",
        "Messages tracked by the correlator, and those dropped before they left the queue (capacity: raise "
        "--state.max-messages; expired: older than --state.ttl).",
        [
            t(f"sum by (instance) (maillog_tracked_messages{{{BASE}}})", "{{instance}} tracked"),
            t(rate("maillog_tracked_messages_evicted_total", BASE, by="instance, reason"), "{{instance}} evicted {{reason}} /s"),
        ],
        unit="short",
        w=8,
    )
    L.ts(
        "Read errors, rotations and skipped lines",
        "Per second: errors opening or reading sources, rotations followed, lines too long (skipped), invalid UTF-8 lines.",
        [
            t(rate("maillog_source_errors_total", BASE, by="source"), "{{source}} errors"),
            t(rate("maillog_source_rotations_total", BASE, by="source, kind"), "{{source}} rotated ({{kind}})"),
            t(rate("maillog_lines_too_long_total", BASE, by="source"), "{{source}} too long"),
            t(rate("maillog_invalid_utf8_lines_total", BASE, by="source"), "{{source}} invalid UTF-8"),
        ],
        w=8,
    )
    return dashboard(
        "maillog-overview",
        "Mail / Overview",
        "maillog_exporter: mail flow, delays, SMTP, anti-spam and exporter health for every MTA (the mta label).",
        L,
        'label_values(mail_messages_received_total{job=~"$job", instance=~"$instance"}, mta)',
        links=[link("Per-MTA detail", "maillog-detail")],
    )


def postfix():
    L = Layout()
    L.row("Delivery")
    L.ts(
        "Deliveries by transport and status",
        "Delivery status lines per second by delivery agent and status ("
        "qmgr = recipients the queue manager deferred itself).",
        [t(rate("mail_deliveries_total", TRANSPORT, by="transport, status"), "{{transport}} {{status}}")],
        w=8,
    )
    L.ts(
        "Queue: received, removed, expired",
        "Messages per second entering the queue (cleanup), leaving it (qmgr removed), and expired.",
        [
            t(rate("mail_messages_received_total", MTA), "received"),
            t(rate("mail_messages_removed_total", MTA), "removed"),
            t(rate("mail_messages_expired_total", MTA), "expired"),
        ],
        w=8,
    )
    L.ts(
        "Notifications generated",
        "Non-delivery, delay and success notifications Postfix generated, per second.",
        [t(rate("mail_bounce_notifications_total", MTA, by="kind"), "{{kind}}")],
        w=8,
    )

    L.row("Delay stages (sent mail, delays=a/b/c/d)")
    L.ts(
        "p95 by stage",
        "95th percentile of each stage of Postfix delays=a/b/c/d: before_queue_manager (a: arrival until the queue "
        "manager; slow cleanup or content filter), in_queue_manager (b: waiting in the queue; congestion, "
        "concurrency limits), connection_setup (c: DNS, TCP, HELO, TLS), transmission (d: sending the message).",
        [t(quantile(0.95, "mail_delivery_stage_delay_seconds", MTA, "stage"), "{{stage}}")],
        unit="s",
        w=8,
    )
    L.ts(
        "Average by stage",
        "Mean of each delays=a/b/c/d stage (sum / count of the histogram).",
        [
            t(
                rate("mail_delivery_stage_delay_seconds_sum", MTA, by="stage")
                + " / "
                + rate("mail_delivery_stage_delay_seconds_count", MTA, by="stage"),
                "{{stage}}",
            )
        ],
        unit="s",
        w=8,
    )
    L.ts(
        "Delivery delay p95 by transport",
        "95th percentile of delay= of sent mail per delivery agent.",
        [t(quantile(0.95, "mail_delivery_delay_seconds", TRANSPORT, "transport", ', status="sent"'), "{{transport}}")],
        unit="s",
        w=8,
    )

    L.row("postscreen")
    L.ts(
        "postscreen verdicts by reason",
        "Clients allowed (pass_new, pass_old, allowlisted) and denied (the test they failed), per second.",
        [
            t(
                rate("mail_spam_verdicts_total", BASE, by="verdict, reason", extra=', filter="postscreen"'),
                "{{verdict}} {{reason}}",
            )
        ],
        stack=True,
    )
    L.ts(
        "postscreen connections and rejects",
        "Connections postscreen accepted and the rejects it answered itself (NOQUEUE: reject), per second.",
        [
            t(rate("mail_smtp_connections_total", MTA, extra=', service="postscreen"'), "connections"),
            t(rate("mail_smtp_rejects_total", MTA, by="code", extra=', service="postscreen"'), "rejected {{code}}"),
        ],
    )

    L.row("SMTP server sessions")
    L.ts(
        "Session errors",
        "Sessions that ended abnormally per second: lost connection, timeout, too many errors, by the last command.",
        [t(rate("mail_smtp_session_errors_total", MTA, by="service, kind, after"), "{{service}} {{kind}} after {{after}}")],
        w=8,
    )
    L.ts(
        "Rejects by service, stage and code",
        "Rejected commands or messages per second.",
        [t(rate("mail_smtp_rejects_total", MTA, by="service, stage, code"), "{{service}} {{stage}} {{code}}")],
        w=8,
        stack=True,
    )
    L.ts(
        "TLS sessions and AUTH failures",
        "TLS sessions established per service and direction, and failed SMTP AUTH per mechanism, per second.",
        [
            t(rate("mail_smtp_tls_connections_total", MTA, by="service, direction"), "TLS {{service}} {{direction}}"),
            t(rate("mail_auth_failures_total", MTA, by="service, mechanism"), "AUTH failed {{service}} {{mechanism}}"),
        ],
        w=8,
    )
    L.ts(
        "Outbound connection errors",
        "Failed connection attempts of the smtp/lmtp clients per second.",
        [t(rate("mail_smtp_outbound_connect_errors_total", TRANSPORT, by="transport, error"), "{{transport}} {{error}}")],
        w=8,
    )
    L.ts(
        "Message size",
        "p50 and p95 of the size of messages entering the queue (qmgr size=).",
        [t(quantile(q, "mail_message_size_bytes", MTA, "mta"), f"p{int(q * 100)}") for q in (0.5, 0.95)],
        unit="bytes",
        w=8,
    )
    L.ts(
        "Recipients per message",
        "Mean and p95 of nrcpt= of messages entering the queue (the p95 is interpolated within buckets).",
        [
            t(mean("mail_message_recipients", MTA, "mta"), "mean"),
            t(quantile(0.95, "mail_message_recipients", MTA, "mta"), "p95"),
        ],
        unit="short",
        w=8,
    )

    L.row("Daemons")
    L.ts(
        "Warnings and errors by daemon",
        "warning:, error:, fatal: and panic: lines per second by Postfix daemon. SASL failures are counted as AUTH "
        "failures instead.",
        [t(rate("mail_daemon_log_messages_total", MTA, by="daemon, severity"), "{{daemon}} {{severity}}")],
        stack=True,
    )
    L.ts(
        "Start, reload, stop",
        "Postfix master start, reload and stop events in each interval.",
        [
            t(
                f"sum by (event) (increase(mail_system_lifecycle_events_total{{{MTA}}}[{RI}]))",
                "{{event}}",
            )
        ],
        unit="short",
        bars=True,
    )
    lifecycle = {
        "name": "Postfix start / reload / stop",
        "datasource": DS,
        "enable": True,
        "hide": False,
        "iconColor": "orange",
        "expr": f"sum by (instance, event) (increase(mail_system_lifecycle_events_total{{{MTA}}}[2m])) > 0",
        "step": "1m",
        "titleFormat": "postfix {{event}}",
        "textFormat": "{{instance}}",
        "useValueForTime": False,
    }
    return dashboard(
        "maillog-postfix",
        "Mail / Postfix",
        "maillog_exporter: what only Postfix logs — delay stages, postscreen, smtpd sessions, daemon warnings.",
        L,
        'label_values(mail_messages_received_total{job=~"$job", instance=~"$instance", mta="postfix"}, mta)',
        annotations=[lifecycle],
        links=[link("Overview", "maillog-overview")],
    )


def main():
    check = sys.argv[1:] == ["--check"]
    stale = []
    for name, build in (("maillog-overview.json", overview), ("maillog-postfix.json", postfix)):
        board = build()
        # Tags let the dashboards link to each other.
        board["tags"] = board["tags"] + (["maillog-overview"] if build is overview else ["maillog-detail"])
        text = json.dumps(board, indent=2, ensure_ascii=False) + "\n"
        path = HERE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        sys.exit(f"out of date (run python3 dashboards/generate.py): {', '.join(stale)}")


if __name__ == "__main__":
    main()
