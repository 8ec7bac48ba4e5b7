#!/usr/bin/env python3
"""Writes the Grafana dashboards: maillog-overview.json for every MTA and the
per-MTA detail dashboards maillog-postfix.json, maillog-qmail.json,
maillog-exim.json, maillog-messaging-server.json and maillog-hosting.json.

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


def pinned(mta):
    """Selectors of a detail dashboard: its MTA is fixed in every query, since
    the `mta` variable's "All" value is `.*` and would mix in other MTAs."""
    sel = BASE + f', mta="{mta}"'
    return sel, sel + ', transport=~"$transport"'


def rate(metric, sel, by=None, extra=""):
    inner = f"rate({metric}{{{sel}{extra}}}[{RI}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q, metric, sel, by, extra=""):
    return (
        f"histogram_quantile({q}, sum by ({by}, le) "
        f"(rate({metric}_bucket{{{sel}{extra}}}[{RI}])))"
    )


def share(metric, sel, where, by=None):
    """Share of a counter's rate whose extra selector `where` matches, e.g.
    the denied verdicts among all verdicts."""
    return f"{rate(metric, sel, by=by, extra=', ' + where)} / {rate(metric, sel, by=by)}"


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


def templating(mta_query, mta_matcher='mta=~"$mta"'):
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
                'label_values(mail_deliveries_total{job=~"$job", instance=~"$instance", ' + mta_matcher + "}, transport)",
            ),
        ]
    }


def dashboard(uid, title, description, layout, mta_query, annotations=(), links=(), mta_matcher='mta=~"$mta"'):
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
        "templating": templating(mta_query, mta_matcher),
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
    L.ts(
        "Queue concurrency against its limit",
        "Deliveries in progress and the most the queue manager runs at once, per transport, as last logged "
        "(qmail-send `status: local l/L remote r/R`; Postfix does not log its concurrency). A line that stays at "
        "its limit means deliveries wait for a free slot (the MailQueueConcurrencySaturated alert).",
        [
            t(f"sum by (instance, mta, transport) (mail_queue_active_deliveries{{{TRANSPORT}}})", "{{instance}} {{mta}} {{transport}} active"),
            t(f"sum by (instance, mta, transport) (mail_queue_concurrency_limit{{{TRANSPORT}}})", "{{instance}} {{mta}} {{transport}} limit"),
        ],
        unit="short",
    )
    L.ts(
        "Frozen, notifications and discarded bounces",
        "Per second: messages the MTA froze (Exim: suspended until thawed or timed out), notifications it generated "
        "(non-delivery, delay, success), and bounces it threw away as undeliverable (qmail triple bounces).",
        [
            t(rate("mail_messages_frozen_total", MTA, by="mta"), "{{mta}} frozen"),
            t(rate("mail_bounce_notifications_total", MTA, by="mta, kind"), "{{mta}} notification {{kind}}"),
            t(rate("mail_bounces_discarded_total", MTA, by="mta"), "{{mta}} bounce discarded"),
        ],
    )

    L.row("Delays")
    L.ts(
        "Delivery delay of sent mail",
        "p50, p95 and p99 of the time from arrival to delivery, from the histogram buckets (Postfix and Sendmail "
        "delay=, Exim QT=; qmail, Messaging Server and hosting: the result's time minus the arrival's).",
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
        "SMTP connections open against the limit",
        "Connections open now: as the connection server last logged them against its limit (tcpserver "
        "`status: n/N`, N its -c; at the limit new clients wait; the MailSmtpConnectionsSaturated alert), and as "
        "counted from opens and closes by direction (Messaging Server O and C records).",
        [
            t(f"sum by (instance, mta, service) (mail_smtp_connections_open{{{MTA}}})", "{{instance}} {{mta}} {{service}} open"),
            t(f"sum by (instance, mta, service) (mail_smtp_connection_limit{{{MTA}}})", "{{instance}} {{mta}} {{service}} limit"),
            t(
                f"sum by (instance, mta, direction) (mail_smtp_connections_current{{{MTA}}})",
                "{{instance}} {{mta}} {{direction}} counted",
            ),
        ],
        unit="short",
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
        "Decisions of anti-spam filters per second (postscreen for Postfix; rblsmtpd, tcprules and spamdyke in "
        "front of qmail). Not filtered by MTA: verdicts carry a `filter` label instead.",
        [t(rate("mail_spam_verdicts_total", BASE, by="filter, verdict, reason"), "{{filter}} {{verdict}} {{reason}}")],
        stack=True,
    )
    L.ts(
        "Denied share of verdicts",
        "Denied / all verdicts per filter.",
        [
            t(
                share("mail_spam_verdicts_total", BASE, 'verdict="denied"', by="filter"),
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
        "Tracked deliveries and evictions",
        "Deliveries started and not yet reported (qmail, hosting delivery log), held to join the result to its "
        "message, and those dropped before their result (capacity: raise --state.max-messages; expired: older "
        "than --state.ttl; id_reused, restart: qmail-send reused the id or exited first).",
        [
            t(f"sum by (instance) (maillog_tracked_deliveries{{{BASE}}})", "{{instance}} tracked"),
            t(rate("maillog_tracked_deliveries_evicted_total", BASE, by="instance, reason"), "{{instance}} evicted {{reason}} /s"),
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
    MTA, TRANSPORT = pinned("postfix")
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
                mean("mail_delivery_stage_delay_seconds", MTA, by="stage"),
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
        mta_matcher='mta="postfix"',
    )


def detail(mta, uid, title, description, layout, annotations=()):
    """A per-MTA detail dashboard: the MTA pinned, linked to the overview."""
    return dashboard(
        uid,
        title,
        description,
        layout,
        f'label_values(mail_messages_received_total{{job=~"$job", instance=~"$instance", mta="{mta}"}}, mta)',
        annotations=annotations,
        links=[link("Overview", "maillog-overview"), link("Per-MTA detail", "maillog-detail")],
        mta_matcher=f'mta="{mta}"',
    )


def lifecycle_annotation(mta, MTA):
    return {
        "name": f"{mta} start / reload / stop",
        "datasource": DS,
        "enable": True,
        "hide": False,
        "iconColor": "orange",
        "expr": f"sum by (instance, event) (increase(mail_system_lifecycle_events_total{{{MTA}}}[2m])) > 0",
        "step": "1m",
        "titleFormat": f"{mta} {{{{event}}}}",
        "textFormat": "{{instance}}",
        "useValueForTime": False,
    }


def qmail():
    MTA, TRANSPORT = pinned("qmail")
    L = Layout()
    L.row("Delivery concurrency (qmail-send status: local l/L remote r/R)")
    for transport in ("remote", "local"):
        sel = MTA + f', transport="{transport}"'
        L.stat(
            f"{transport.capitalize()} concurrency used",
            f"{transport.capitalize()} deliveries in progress / control/concurrency{transport}, as qmail-send "
            "last logged them (the busiest instance).",
            [t(f"max(mail_queue_active_deliveries{{{sel}}} / (mail_queue_concurrency_limit{{{sel}}} > 0))", "used")],
            unit="percentunit",
            w=4,
            thresholds=[(0.7, "orange"), (0.9, "red")],
        )
    L.ts(
        "Concurrency used by transport",
        "Active deliveries / limit per channel. Staying near 100% means deliveries wait for a free slot "
        "(MailQueueConcurrencySaturated fires at 90% on average over 10 minutes, for 15 minutes).",
        [
            t(
                f"sum by (instance, transport) (mail_queue_active_deliveries{{{TRANSPORT}}}) / "
                f"sum by (instance, transport) (mail_queue_concurrency_limit{{{TRANSPORT}}} > 0)",
                "{{instance}} {{transport}}",
            )
        ],
        unit="percentunit",
        w=16,
    )
    for transport in ("remote", "local"):
        sel = MTA + f', transport="{transport}"'
        L.ts(
            f"{transport.capitalize()} deliveries: active and limit",
            f"{transport.capitalize()} deliveries in progress and concurrency{transport}, as last logged "
            "(qmail-send logs the status after every start and end of a delivery).",
            [
                t(f"sum by (instance) (mail_queue_active_deliveries{{{sel}}})", "{{instance}} active"),
                t(f"sum by (instance) (mail_queue_concurrency_limit{{{sel}}})", "{{instance}} limit"),
            ],
            unit="short",
        )

    L.row("SMTP: tcpserver, rblsmtpd, tcprules")
    L.ts(
        "tcpserver connections: open and limit",
        "Connections open per tcpserver instance against its -c limit, as logged (`status: n/N`). At the limit "
        "tcpserver stops accepting and new clients wait (MailSmtpConnectionsSaturated).",
        [
            t(f"sum by (instance, service) (mail_smtp_connections_open{{{MTA}}})", "{{instance}} {{service}} open"),
            t(f"sum by (instance, service) (mail_smtp_connection_limit{{{MTA}}})", "{{instance}} {{service}} limit"),
        ],
        unit="short",
        w=8,
    )
    L.ts(
        "Connections accepted",
        "tcpserver `pid N from IP` per second by instance (before tcprules decide: denied clients count too).",
        [t(rate("mail_smtp_connections_total", MTA, by="service"), "{{service}}")],
        w=8,
    )
    L.ts(
        "rblsmtpd and tcprules verdicts",
        "Clients refused per second: rblsmtpd (dnsbl_temporary: 4xx, the client may retry; dnsbl_permanent: 5xx) "
        "and tcprules deny.",
        [
            t(
                rate("mail_spam_verdicts_total", BASE, by="filter, verdict, reason", extra=', filter=~"rblsmtpd|tcprules"'),
                "{{filter}} {{verdict}} {{reason}}",
            )
        ],
        w=8,
        stack=True,
    )

    L.row("Delivery and queue")
    L.ts(
        "Deliveries by channel and status",
        "qmail-send delivery results per second: success (sent), deferral (deferred), failure (bounced), by "
        "channel (local, remote; unknown if the `starting delivery` line was not seen).",
        [t(rate("mail_deliveries_total", TRANSPORT, by="transport, status"), "{{transport}} {{status}}")],
        w=8,
    )
    L.ts(
        "Delivery delay by channel",
        "p50 and p95 of the time from `new msg` to the result of a successful delivery, per channel (qmail logs "
        "no delay: computed as qmailanalog's matchup does).",
        [
            t(quantile(q, "mail_delivery_delay_seconds", TRANSPORT, "transport", ', status="sent"'), f"{{{{transport}}}} p{int(q * 100)}")
            for q in (0.5, 0.95)
        ],
        unit="s",
        w=8,
    )
    L.ts(
        "Time in queue",
        "p50, p95 and p99 of the time from `new msg` to `end msg`.",
        [t(quantile(q, "mail_message_queue_seconds", MTA, "mta"), f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)],
        unit="s",
        w=8,
    )
    L.ts(
        "Queue: received, removed, bounces",
        "Per second: `new msg`, `end msg`, bounces qmail-send generated (`bounce msg`) and triple bounces it "
        "discarded.",
        [
            t(rate("mail_messages_received_total", MTA), "received"),
            t(rate("mail_messages_removed_total", MTA), "removed"),
            t(rate("mail_bounce_notifications_total", MTA, by="kind"), "notification {{kind}}"),
            t(rate("mail_bounces_discarded_total", MTA), "triple bounce discarded"),
        ],
        w=8,
    )
    L.ts(
        "Messages in queue",
        "Messages seen at `new msg` and not yet at `end msg` (the exporter's view of the queue).",
        [t(f"sum by (instance) (mail_queue_messages{{{MTA}}})", "{{instance}}")],
        unit="short",
        w=8,
    )
    L.ts(
        "Attempts per recipient",
        "Mean attempts per recipient at its final outcome, per channel (1 + the deferrals seen, across "
        "qmail-send restarts).",
        [t(mean("mail_delivery_attempts", TRANSPORT, "transport"), "{{transport}}")],
        unit="short",
        w=8,
    )

    L.row("Daemons")
    L.ts(
        "Warnings, alerts and errors",
        "qmail-send and tcpserver warning:/alert: lines, and spamdyke ERROR: lines, per second.",
        [t(rate("mail_daemon_log_messages_total", MTA, by="daemon, severity"), "{{daemon}} {{severity}}")],
        stack=True,
    )
    L.ts(
        "Message size",
        "p50 and p95 of `info msg M: bytes B`.",
        [t(quantile(q, "mail_message_size_bytes", MTA, "mta"), f"p{int(q * 100)}") for q in (0.5, 0.95)],
        unit="bytes",
    )
    return detail(
        "qmail",
        "maillog-qmail",
        "Mail / qmail",
        "maillog_exporter: what qmail logs — local/remote concurrency against its limits, tcpserver connections, "
        "rblsmtpd and tcprules verdicts, delivery delay and time in queue.",
        L,
        annotations=[lifecycle_annotation("qmail", MTA)],
    )


def messaging_server():
    MTA, TRANSPORT = pinned("messaging_server")
    L = Layout()
    L.row("Channels")
    L.ts(
        "Deliveries by channel and status",
        "D (sent), Q (deferred) and R (bounced) records per second, by the channel that dequeued the message.",
        [t(rate("mail_deliveries_total", TRANSPORT, by="transport, status"), "{{transport}} {{status}}")],
    )
    L.ts(
        "Deferred share by channel",
        "Q records / all delivery records per channel: which channel's deliveries fail temporarily.",
        [
            t(
                share("mail_deliveries_total", TRANSPORT, 'status="deferred"', by="transport"),
                "{{transport}}",
            )
        ],
        unit="percentunit",
    )
    L.ts(
        "Delivery delay p95 by channel",
        "95th percentile of the time from a message's first E record to its D record, per channel.",
        [t(quantile(0.95, "mail_delivery_delay_seconds", TRANSPORT, "transport", ', status="sent"'), "{{transport}}")],
        unit="s",
        w=8,
    )
    L.ts(
        "Delivery delay p50 by channel",
        "Median of the time from a message's first E record to its D record, per channel.",
        [t(quantile(0.5, "mail_delivery_delay_seconds", TRANSPORT, "transport", ', status="sent"'), "{{transport}}")],
        unit="s",
        w=8,
    )
    L.ts(
        "Attempts per recipient by channel",
        "Mean attempts at the final outcome, per channel (from the deferrals seen and the queue file name's "
        "attempt letters).",
        [t(mean("mail_delivery_attempts", TRANSPORT, "transport"), "{{transport}}")],
        unit="short",
        w=8,
    )

    L.row("Queue")
    L.ts(
        "Received, removed, expired",
        "Messages per second: first E record, final outcome of the last recipient, and expired.",
        [
            t(rate("mail_messages_received_total", MTA), "received"),
            t(rate("mail_messages_removed_total", MTA), "removed"),
            t(rate("mail_messages_expired_total", MTA), "expired"),
            t(rate("mail_bounce_notifications_total", MTA, by="kind"), "notification {{kind}}"),
        ],
        w=8,
    )
    L.ts(
        "Messages in queue",
        "Messages seen enqueued (E) and not yet delivered or returned (the exporter's view of the queue).",
        [t(f"sum by (instance) (mail_queue_messages{{{MTA}}})", "{{instance}}")],
        unit="short",
        w=8,
    )
    L.ts(
        "Time in queue",
        "p50 and p95 of the time from the first E record to the final outcome of the last recipient.",
        [t(quantile(q, "mail_message_queue_seconds", MTA, "mta"), f"p{int(q * 100)}") for q in (0.5, 0.95)],
        unit="s",
        w=8,
    )
    L.ts(
        "Message size",
        "p50 and p95 of the size of enqueued messages (blocks × BLOCK_SIZE).",
        [t(quantile(q, "mail_message_size_bytes", MTA, "mta"), f"p{int(q * 100)}") for q in (0.5, 0.95)],
        unit="bytes",
    )
    L.ts(
        "Recipients per message",
        "Mean and p95 of the E records of a message (the p95 is interpolated within buckets).",
        [
            t(mean("mail_message_recipients", MTA, "mta"), "mean"),
            t(quantile(0.95, "mail_message_recipients", MTA, "mta"), "p95"),
        ],
        unit="short",
    )

    L.row("Connections (O and C records)")
    L.stat(
        "Inbound connections open",
        "Inbound connections counted open now (opened minus closed as seen, never below 0).",
        [t(f'sum(mail_smtp_connections_current{{{MTA}, direction="inbound"}})', "inbound")],
        w=4,
    )
    L.stat(
        "Outbound connections open",
        "Outbound connections counted open now (opened minus closed as seen, never below 0).",
        [t(f'sum(mail_smtp_connections_current{{{MTA}, direction="outbound"}})', "outbound")],
        w=4,
    )
    L.ts(
        "Connections open by channel and direction",
        "Opened minus closed, counted by the exporter (a close whose open came before it started is not "
        "subtracted).",
        [t(f"sum by (service, direction) (mail_smtp_connections_current{{{MTA}}})", "{{service}} {{direction}}")],
        unit="short",
        w=16,
    )
    L.ts(
        "Connections opened and closed",
        "O and C records per second by channel and direction (+ inbound, - outbound).",
        [
            t(rate("mail_smtp_connections_opened_total", MTA, by="service, direction"), "opened {{service}} {{direction}}"),
            t(rate("mail_smtp_connections_closed_total", MTA, by="service, direction"), "closed {{service}} {{direction}}"),
        ],
    )
    L.ts(
        "Rejected submissions by channel and code",
        "J records per second: submissions the MTA rejected, by channel and the first reply code in the "
        "diagnostics.",
        [t(rate("mail_smtp_rejects_total", MTA, by="service, code"), "{{service}} {{code}}")],
        stack=True,
    )
    return detail(
        "messaging_server",
        "maillog-messaging-server",
        "Mail / Messaging Server",
        "maillog_exporter: Sun/Oracle Messaging Server — deliveries and delays by channel, queue, connections by "
        "direction, rejected submissions.",
        L,
    )


def exim():
    MTA, TRANSPORT = pinned("exim")
    L = Layout()
    L.row("Flow and frozen messages")
    L.stat(
        "Frozen (24h)",
        "Messages Exim froze in the last 24 hours (`Frozen`, bounces that could not be delivered, `frozen by ACL`). "
        "They stay in the queue until thawed or timeout_frozen_after; list them with `exiqgrep -z -i`.",
        [t(f"sum(increase(mail_messages_frozen_total{{{MTA}}}[1d]))", "frozen")],
        w=4,
        thresholds=[(1, "orange"), (10, "red")],
    )
    L.stat(
        "Messages in queue",
        "Messages seen arriving (<=) and not yet Completed.",
        [t(f"sum(mail_queue_messages{{{MTA}}})", "queue")],
        w=4,
        thresholds=[(100, "orange"), (1000, "red")],
    )
    L.ts(
        "Deliveries by transport and status",
        "=>, -> and >> (sent), == (deferred), ** (bounced) per second by transport (router: no transport).",
        [t(rate("mail_deliveries_total", TRANSPORT, by="transport, status"), "{{transport}} {{status}}")],
        w=16,
    )
    L.ts(
        "Received, completed, frozen, expired",
        "Per second: arrivals (<=), Completed, messages frozen, and messages whose retry timeout was exceeded.",
        [
            t(rate("mail_messages_received_total", MTA), "received"),
            t(rate("mail_messages_removed_total", MTA), "completed"),
            t(rate("mail_messages_frozen_total", MTA), "frozen"),
            t(rate("mail_messages_expired_total", MTA), "retry timeout exceeded"),
            t(rate("mail_bounce_notifications_total", MTA, by="kind"), "bounce generated"),
        ],
    )
    L.ts(
        "Frozen messages per hour",
        "Messages frozen in each hour (MailMessagesFrozen fires above 10 in an hour, for 15 minutes).",
        [t(f"sum by (instance) (increase(mail_messages_frozen_total{{{MTA}}}[1h]))", "{{instance}}")],
        unit="short",
    )

    L.row("Queue time (QT=)")
    L.ts(
        "Time in queue",
        "p50, p95 and p99 of QT= of Completed (queue_time_overall), else the time since <=.",
        [t(quantile(q, "mail_message_queue_seconds", MTA, "mta"), f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)],
        unit="s",
        w=8,
    )
    L.ts(
        "Delivery delay p95 by transport",
        "95th percentile of QT= of delivery lines (queue_time), else the time since <=, per transport.",
        [t(quantile(0.95, "mail_delivery_delay_seconds", TRANSPORT, "transport", ', status="sent"'), "{{transport}}")],
        unit="s",
        w=8,
    )
    L.ts(
        "Attempts per recipient",
        "Mean attempts at the final outcome per transport (1 + the == lines seen for the address).",
        [t(mean("mail_delivery_attempts", TRANSPORT, "transport"), "{{transport}}")],
        unit="short",
        w=8,
    )

    L.row("SMTP")
    L.ts(
        "Rejects by stage",
        "Rejected commands or messages per second by stage: CONNECT (connect ACL, host_reject_connection, "
        "synchronization errors), HELO, MAIL, RCPT, DATA, END-OF-MESSAGE (after DATA, local_scan, too big).",
        [t(rate("mail_smtp_rejects_total", MTA, by="stage"), "{{stage}}")],
        w=8,
        stack=True,
    )
    L.ts(
        "Rejects by stage and code",
        "Rejects per second by stage and reply code (451 = temporarily rejected).",
        [t(rate("mail_smtp_rejects_total", MTA, by="stage, code"), "{{stage}} {{code}}")],
        w=8,
        stack=True,
    )
    L.ts(
        "Session errors",
        "SMTP sessions lost, timed out, or dropped for too many errors, per second.",
        [t(rate("mail_smtp_session_errors_total", MTA, by="kind, after"), "{{kind}} after {{after}}")],
        w=8,
    )
    L.ts(
        "Connections, TLS and AUTH failures",
        "SMTP connections (smtp_connection log selector), TLS sessions (X=) by direction, and failed "
        "authenticators by mechanism, per second.",
        [
            t(rate("mail_smtp_connections_total", MTA), "connections"),
            t(rate("mail_smtp_tls_connections_total", MTA, by="direction"), "TLS {{direction}}"),
            t(rate("mail_auth_failures_total", MTA, by="mechanism"), "AUTH failed {{mechanism}}"),
        ],
    )
    L.ts(
        "Warnings and panics",
        "Exim `Warning:` lines and panics (configuration errors, lost privilege), per second.",
        [t(rate("mail_daemon_log_messages_total", MTA, by="severity"), "{{severity}}")],
        stack=True,
    )
    return detail(
        "exim",
        "maillog-exim",
        "Mail / Exim",
        "maillog_exporter: Exim — frozen messages, rejects by stage and code, queue time (QT=), sessions.",
        L,
        annotations=[lifecycle_annotation("exim", MTA)],
    )


def hosting():
    MTA, TRANSPORT = pinned("hosting")
    SD = BASE + ', filter="spamdyke"'
    L = Layout()
    L.row("SMTP log (service = listening port)")
    L.ts(
        "Transactions and accepted messages",
        "MAIL commands (from) and messages queued (resp 250 ok … qp …) per second, per service.",
        [
            t(rate("mail_smtp_transactions_total", MTA, by="service"), "{{service}} transactions"),
            t(rate("mail_smtp_messages_accepted_total", MTA, by="service"), "{{service}} accepted"),
        ],
        w=8,
    )
    L.ts(
        "Recipients accepted and rejected",
        "RCPT commands per second by the server's reply: accepted (2xx) or rejected (4xx/5xx).",
        [t(rate("mail_smtp_recipients_total", MTA, by="service, result"), "{{service}} {{result}}")],
        w=8,
        stack=True,
    )
    L.ts(
        "Rejected share of recipients",
        "Rejected / all RCPT commands per service.",
        [
            t(
                share("mail_smtp_recipients_total", MTA, 'result="rejected"', by="service"),
                "{{service}}",
            )
        ],
        unit="percentunit",
        w=8,
    )
    L.ts(
        "Rejects by stage and code",
        "4xx/5xx replies per second at the stage of the command they answer (MAIL, RCPT, END-OF-MESSAGE).",
        [t(rate("mail_smtp_rejects_total", MTA, by="service, stage, code"), "{{service}} {{stage}} {{code}}")],
        w=8,
        stack=True,
    )
    L.ts(
        "Recipient checks",
        "`check` lines per second by result and detail (existing_recipient: the mailbox exists).",
        [t(rate("mail_smtp_recipient_checks_total", MTA, by="result, detail"), "{{result}} {{detail}}")],
        w=8,
    )
    L.ts(
        "Message size",
        "p50 and p95 of the size of queued messages (the SMTP log's size line).",
        [t(quantile(q, "mail_message_size_bytes", MTA, "mta"), f"p{int(q * 100)}") for q in (0.5, 0.95)],
        unit="bytes",
        w=8,
    )

    L.row("Delivery log")
    L.ts(
        "Deliveries by channel and status",
        "result lines per second: success (sent), deferral (deferred), failure (bounced), by the channel of the "
        "try line (local, remote).",
        [t(rate("mail_deliveries_total", TRANSPORT, by="transport, status"), "{{transport}} {{status}}")],
        w=8,
    )
    L.ts(
        "Delivery delay by channel",
        "p50 and p95 of the time from init to the result of a successful delivery (whole seconds).",
        [
            t(quantile(q, "mail_delivery_delay_seconds", TRANSPORT, "transport", ', status="sent"'), f"{{{{transport}}}} p{int(q * 100)}")
            for q in (0.5, 0.95)
        ],
        unit="s",
        w=8,
    )
    L.ts(
        "Authenticated submissions",
        "Messages submitted by an authenticated SMTP client (smtp_auth/ results) per second, against all "
        "messages queued by the SMTP server.",
        [
            t(rate("mail_authenticated_submissions_total", MTA), "authenticated"),
            t(rate("mail_messages_received_total", MTA), "received"),
        ],
        w=8,
    )

    L.row("spamdyke")
    L.ts(
        "spamdyke verdicts by reason",
        "spamdyke decisions per second by its code (ALLOWED…, DENIED_RBL_MATCH, DENIED_RDNS_MISSING, "
        "DENIED_GRAYLISTED, TIMEOUT…). Not filtered by MTA: spamdyke is a filter in front of qmail-smtpd.",
        [t(rate("mail_spam_verdicts_total", SD, by="verdict, reason"), "{{verdict}} {{reason}}")],
        stack=True,
    )
    L.ts(
        "spamdyke denied share",
        "Denied / all spamdyke decisions.",
        [
            t(
                share("mail_spam_verdicts_total", SD, 'verdict="denied"'),
                "denied",
            )
        ],
        unit="percentunit",
    )
    L.ts(
        "Clients by encryption",
        "spamdyke decisions per second by how the client was connected: none, tls (started with spamdyke), ssl "
        "(SMTPS), tls_passthrough (TLS with qmail).",
        [t(rate("mail_spam_filter_clients_total", SD, by="encryption"), "{{encryption}}")],
        w=8,
        stack=True,
    )
    L.ts(
        "Clients by authentication",
        "spamdyke decisions per second for authenticated and unauthenticated clients.",
        [t(rate("mail_spam_filter_clients_total", SD, by="authenticated"), "authenticated={{authenticated}}")],
        w=8,
        stack=True,
    )
    L.ts(
        "spamdyke errors",
        "spamdyke ERROR: lines per second (counted under mta=qmail, daemon=spamdyke).",
        [t(rate("mail_daemon_log_messages_total", BASE, extra=', daemon="spamdyke"'), "errors")],
        w=8,
    )
    return detail(
        "hosting",
        "maillog-hosting",
        "Mail / Hosting SMTP and spamdyke",
        "maillog_exporter: shared-hosting SMTP and delivery logs (per listening port) and spamdyke in front of "
        "qmail-smtpd — transactions, recipients accepted and rejected, deliveries, spamdyke verdicts, encryption "
        "and authentication.",
        L,
    )


BOARDS = (
    ("maillog-overview.json", overview),
    ("maillog-postfix.json", postfix),
    ("maillog-qmail.json", qmail),
    ("maillog-exim.json", exim),
    ("maillog-messaging-server.json", messaging_server),
    ("maillog-hosting.json", hosting),
)


def main():
    check = sys.argv[1:] == ["--check"]
    stale = []
    for name, build in BOARDS:
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
