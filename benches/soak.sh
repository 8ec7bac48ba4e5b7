#!/usr/bin/env bash
# Soak benchmark (not a CI test): the release binary follows a file while
# benches/soak_writer.py appends realistic Postfix lines at SOAK_RATE lines/s
# and rotates the file (rename + create) every SOAK_ROTATE_SECONDS, for
# SOAK_SECONDS. Every SOAK_SAMPLE_SECONDS it samples the exporter's RSS
# (VmRSS), open file descriptors and CPU time (utime + stime) from /proc.
#
# At the end it prints a table and fails (exit 1) unless:
#   - every line written was read and parsed exactly once
#     (maillog_lines_total parsed == lines written, nothing unparsed);
#   - RSS after the warm-up stays within 10 % (max vs min);
#   - open file descriptors after the warm-up vary by at most 1 (a
#     rotation hand-over may briefly hold the old and the new file).
# It reports CPU time per line.
#
#   benches/soak.sh                  # 10 minutes, 20k lines/s, rotation every minute
#   SOAK_SECONDS=30 benches/soak.sh  # the short version tests/run.sh runs
#
# Knobs: SOAK_SECONDS (600), SOAK_RATE (20000), SOAK_ROTATE_SECONDS (60, or
# a third of the run when that is shorter than 3 minutes, so short runs
# rotate too), SOAK_LATE_LINES (0: lines the writer still appends to the
# renamed file after the new one exists), SOAK_SAMPLE_SECONDS (5), SOAK_WARMUP_SECONDS (a fifth of the
# run, at least 10), SOAK_BIN (default: cargo build --release, then
# target/release/maillog_exporter). Needs Linux /proc, python3 and bash.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${SOAK_SECONDS:-600}
rate=${SOAK_RATE:-20000}
if [ -n "${SOAK_ROTATE_SECONDS:-}" ]; then
    rotate=$SOAK_ROTATE_SECONDS
elif [ "$duration" -lt 180 ]; then
    rotate=$((duration / 3))
else
    rotate=60
fi
sample=${SOAK_SAMPLE_SECONDS:-5}
warmup=${SOAK_WARMUP_SECONDS:-$((duration / 5 > 10 ? duration / 5 : 10))}

say() { printf 'soak: %s\n' "$*" >&2; }

if [ -n "${SOAK_BIN:-}" ]; then
    bin=$SOAK_BIN
else
    say "building the release binary"
    cargo build --release --locked --quiet --bin maillog_exporter
    bin=target/release/maillog_exporter
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/maillog-soak.XXXXXX")
exporter_pid=
writer_pid=
cleanup() {
    for pid in $writer_pid $exporter_pid; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log=$work/mail.log
: >"$log"
"$bin" "$log" --log.format postfix --tail.poll-interval 250ms --tail.positions-file "$work/positions.json" \
    --web.listen-address 127.0.0.1:0 --log.level info 2>"$work/exporter.err" &
exporter_pid=$!

port=
for _ in $(seq 200); do
    # (The log may be coloured: drop ANSI escapes first.)
    port=$(sed 's/\x1b\[[0-9;]*m//g' "$work/exporter.err" 2>/dev/null |
        grep -o 'addr=127\.0\.0\.1:[0-9]*' | head -1 | cut -d: -f2 || true)
    [ -n "$port" ] && break
    kill -0 "$exporter_pid" 2>/dev/null || { cat "$work/exporter.err" >&2; say "exporter exited"; exit 1; }
    sleep 0.1
done
[ -n "$port" ] || { say "exporter did not report its address"; exit 1; }

scrape() {
    local out
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf 'GET /metrics HTTP/1.0\r\nHost: soak\r\n\r\n' >&3
    out=$(cat <&3)
    exec 3<&-
    printf '%s\n' "$out"
}
# Sum of the samples of a metric whose series matches a regex.
metric_sum() { awk -v re="$1" '$0 ~ re { s += $NF } END { printf "%.0f", s }'; }

clk_tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$exporter_pid/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$exporter_pid/status"; }
fd_count() { ls "/proc/$exporter_pid/fd" | wc -l; }

say "exporter pid $exporter_pid on 127.0.0.1:$port; writing $rate lines/s for ${duration}s, rotating every ${rotate}s, warm-up ${warmup}s"
cpu0=$(cpu_ticks)
python3 benches/soak_writer.py --path "$log" --rate "$rate" --seconds "$duration" \
    --rotate-every "$rotate" --late-lines "${SOAK_LATE_LINES:-0}" --count-file "$work/count" >/dev/null 2>"$work/writer.err" &
writer_pid=$!
t0=$(date +%s.%N)

declare -a T RSS FDS CPU READ
take_sample() {
    local now
    now=$(date +%s.%N)
    T+=("$(awk -v a="$now" -v b="$t0" 'BEGIN { printf "%.0f", a - b }')")
    RSS+=("$(rss_kib)")
    FDS+=("$(fd_count)")
    CPU+=("$(cpu_ticks)")
    READ+=("$(scrape | metric_sum '^maillog_lines_total[{]')")
}

next=$sample
while kill -0 "$writer_pid" 2>/dev/null; do
    elapsed=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { print a - b }')
    wait_s=$(awk -v n="$next" -v e="$elapsed" 'BEGIN { d = n - e; print (d > 0 ? d : 0) }')
    sleep "$wait_s"
    kill -0 "$writer_pid" 2>/dev/null || break
    take_sample
    say "t=${T[-1]}s rss=${RSS[-1]}KiB fds=${FDS[-1]} lines_read=${READ[-1]}"
    next=$((next + sample))
done
wait "$writer_pid" || { cat "$work/writer.err" >&2; say "writer failed"; exit 1; }
writer_pid=
cat "$work/writer.err" >&2
written=$(cat "$work/count")

# The exporter catches up: every line written must be read.
deadline=$(($(date +%s) + 60))
while :; do
    body=$(scrape)
    total=$(metric_sum '^maillog_lines_total[{]' <<<"$body")
    [ "$total" -ge "$written" ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
        say "exporter read $total of $written lines within 60 s of the writer's end"
        break
    fi
    sleep 0.2
done
take_sample
body=$(scrape)
cpu1=$(cpu_ticks)
parsed=$(metric_sum '^maillog_lines_total[{].*result="parsed"' <<<"$body")
unparsed=$(metric_sum '^maillog_lines_total[{].*result="unparsed"' <<<"$body")
ignored=$(metric_sum '^maillog_lines_total[{].*result="ignored"' <<<"$body")
rotations=$(metric_sum '^maillog_source_rotations_total[{]' <<<"$body")
errors=$(metric_sum '^maillog_source_errors_total[{]' <<<"$body")
kill -TERM "$exporter_pid"
wait "$exporter_pid" || true
exporter_pid=

printf '\n%8s %10s %6s %10s %12s\n' "t (s)" "RSS (KiB)" "fds" "CPU (s)" "lines read"
for i in "${!T[@]}"; do
    printf '%8s %10s %6s %10.2f %12s\n' "${T[$i]}" "${RSS[$i]}" "${FDS[$i]}" \
        "$(awk -v c="${CPU[$i]}" -v c0="$cpu0" -v h="$clk_tck" 'BEGIN { print (c - c0) / h }')" "${READ[$i]}"
done

fail=0
check() { if [ "$1" = ok ]; then printf 'PASS  %s\n' "$2"; else printf 'FAIL  %s\n' "$2"; fail=1; fi; }
echo
[ "$parsed" -eq "$written" ] && [ "$unparsed" -eq 0 ] && [ "$ignored" -eq 0 ] && r=ok || r=bad
check $r "lines: written $written, parsed $parsed, unparsed $unparsed, ignored $ignored"
# After the warm-up: RSS within 10 % and fds within 1.
read -r rmin rmax fmin fmax n < <(
    for i in "${!T[@]}"; do
        [ "${T[$i]}" -ge "$warmup" ] && echo "${RSS[$i]} ${FDS[$i]}"
    done | awk 'NR == 1 { rmin = rmax = $1; fmin = fmax = $2 }
        { if ($1 < rmin) rmin = $1; if ($1 > rmax) rmax = $1;
          if ($2 < fmin) fmin = $2; if ($2 > fmax) fmax = $2 }
        END { print rmin + 0, rmax + 0, fmin + 0, fmax + 0, NR }')
if [ "$n" -lt 2 ]; then
    check bad "fewer than 2 samples after the ${warmup}s warm-up"
else
    growth=$(awk -v a="$rmax" -v b="$rmin" 'BEGIN { printf "%.1f", (a - b) * 100 / b }')
    awk -v g="$growth" 'BEGIN { exit !(g <= 10) }' && r=ok || r=bad
    check $r "RSS after warm-up ($n samples): ${rmin}-${rmax} KiB, spread ${growth} % (limit 10 %)"
    [ $((fmax - fmin)) -le 1 ] && r=ok || r=bad
    check $r "open fds after warm-up: ${fmin}-${fmax} (limit: spread 1)"
fi
cpu_s=$(awk -v a="$cpu1" -v b="$cpu0" -v h="$clk_tck" 'BEGIN { printf "%.2f", (a - b) / h }')
per_line=$(awk -v a="$cpu1" -v b="$cpu0" -v h="$clk_tck" -v n="$written" \
    'BEGIN { printf "%.2f", n ? (a - b) / h / n * 1e6 : 0 }')
echo "CPU: ${cpu_s} s for ${written} lines = ${per_line} us/line; rotations seen: ${rotations}; source errors: ${errors}"
exit $fail
