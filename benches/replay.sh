#!/usr/bin/env bash
# Whole-process replay benchmark: lines/s and peak RSS of `maillog_exporter
# replay` on a generated Postfix corpus, and its counts against the corpus's
# ground truth.
#
#   benches/replay.sh [LINES]        (default 1000000)
#
# The corpus generator is ../shared/bench/gen_postfix.py when present (set
# GEN=/path/to/gen_postfix.py otherwise). Needs python3 and GNU time.
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
gen=${GEN:-../shared/bench/gen_postfix.py}
[ -f "$gen" ] || { echo "corpus generator not found: set GEN=/path/to/gen_postfix.py" >&2; exit 1; }
work=${TMPDIR:-/tmp}/maillog-bench
mkdir -p "$work"
corpus="$work/corpus-$lines.log"
[ -f "$corpus" ] || python3 "$gen" --seed 42 --lines "$lines" -o "$corpus"
cargo build --release --quiet
bin=target/release/maillog_exporter
cat "$corpus" >/dev/null   # warm the page cache
best=""
for run in 1 2 3; do
    /usr/bin/time -f "%e %M" -o "$work/time" "$bin" replay --log.format postfix "$corpus" >"$work/out.prom"
    read -r secs rss_kib <"$work/time"
    echo "run $run: ${secs}s, peak RSS $((rss_kib / 1024)) MiB"
    if [ -z "$best" ] || awk "BEGIN{exit !($secs < $best)}"; then best=$secs; best_rss=$rss_kib; fi
done
bytes=$(stat -c %s "$corpus")
awk -v l="$lines" -v b="$bytes" -v s="$best" -v r="$best_rss" 'BEGIN{
    if (s <= 0) s = 0.001;
    printf "best of 3: %.3f s  %.0f lines/s  %.1f MB/s  peak RSS %.1f MiB\n", s, l/s, b/s/1e6, r/1024 }'
python3 - "$corpus" "$work/out.prom" <<'PY'
import json, re, sys
corpus, out = sys.argv[1], sys.argv[2]
truth = json.load(open(corpus[:-4] + ".truth.json"))
metrics = {}
for line in open(out):
    if line.startswith("#"):
        continue
    series, value = line.rsplit(" ", 1)
    metrics[series] = float(value)
def get(s): return metrics.get(s, 0)
checks = []
for tr, st in truth["status_lines_by_transport"].items():
    for status, n in st.items():
        checks.append((f'mail_deliveries_total{{mta="postfix",status="{status}",transport="{tr}"}}', n))
checks.append(('mail_messages_received_total{mta="postfix"}', truth["cleanup_message_id"]))
checks.append(('mail_messages_removed_total{mta="postfix"}', truth["qmgr_removed"]))
checks.append(('mail_bounce_notifications_total{kind="non_delivery",mta="postfix"}', truth["bounce_ndr"]))
for code, n in truth["noqueue_reject_smtpd_by_code"].items():
    checks.append((f'mail_smtp_rejects_total{{code="{code}",mta="postfix",service="smtpd",stage="RCPT"}}', n))
checks.append(('mail_smtp_rejects_total{code="550",mta="postfix",service="postscreen",stage="RCPT"}', truth["noqueue_reject_postscreen"]))
for svc, key in (("smtpd", "postfix/smtpd"), ("submission", "postfix/submission/smtpd")):
    checks.append((f'mail_smtp_connections_total{{mta="postfix",service="{svc}"}}', truth["smtpd_connect"][key]))
    auth = sum(v for k, v in metrics.items() if k.startswith("mail_auth_failures_total{") and f'service="{svc}"' in k)
    checks.append((f"auth failures, service {svc} (all mechanisms)", truth["sasl_auth_failed"][key], auth))
checks.append(('mail_smtp_tls_connections_total{direction="outbound",mta="postfix",service="smtp"}', truth["smtp_tls_out"]))
checks.append(('mail_smtp_outbound_connect_errors_total{error="timeout",mta="postfix",transport="smtp"}', truth["smtp_connect_timed_out"]))
parsed = sum(v for k, v in metrics.items() if k.startswith("maillog_lines_total") and 'result="parsed"' in k)
ignored = sum(v for k, v in metrics.items() if k.startswith("maillog_lines_total") and 'result="ignored"' in k)
checks.append(("parsed lines", truth["postfix_lines"], parsed))
checks.append(("ignored lines", truth["non_postfix_lines"], ignored))
bad = 0
for c in checks:
    name, want = c[0], c[1]
    got = c[2] if len(c) > 2 else get(name)
    ok = got == want
    bad += not ok
    print(("ok   " if ok else "FAIL ") + f"{name}: want {want}, got {got:g}")
sys.exit(1 if bad else 0)
PY
