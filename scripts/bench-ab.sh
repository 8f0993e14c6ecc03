#!/usr/bin/env bash
# Usage: scripts/bench-ab.sh BINARY_A BINARY_B RUNS [bench arguments…]
#
# Compares two builds of shopscore on this noisy 2-core machine: runs `BINARY bench ARGS`
# RUNS times for each, interleaved (A B A B …, so both see the same hour of the machine and
# the same broker), and prints each run's end-to-end events/s and CPU per event (the shard
# threads', and in Kafka mode the whole process's per input record), then the medians. Runs
# of one build vary by ±15 % here from hour to hour, so only interleaved runs compare builds
# (README → Benchmark).
#
# Example, against a tansu started as in the README:
#   cp "$CARGO_TARGET_DIR/release/shopscore" /tmp/before   # build, then change and build again
#   SHOPSCORE__KAFKA__REPLICATION_FACTOR=1 scripts/bench-ab.sh /tmp/before \
#     "$CARGO_TARGET_DIR/release/shopscore" 5 --brokers 127.0.0.1:19092 --transactional false \
#     --events 200000 --shops 2000 --days 60
set -euo pipefail

if [ "$#" -lt 3 ]; then
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
a="$1" b="$2" runs="$3"
shift 3

declare -A rates cpus procs
one() {
  local name="$1" bin="$2" out rate cpu total records process
  shift 2
  out="$("$bin" bench "$@" 2>/dev/null)" || {
    echo "bench-ab: $bin bench $* failed" >&2
    exit 1
  }
  # Kafka mode prints "end to end  N events/s", file mode "throughput  N events/s".
  rate="$(sed -nE 's/^ *(end to end|throughput) +([0-9]+) events\/s.*/\2/p' <<<"$out" | head -n 1)"
  cpu="$(sed -nE 's/.*shards \(rules, state, commits\) [0-9.]+ s \(([0-9.]+) µs\/event\).*/\1/p' <<<"$out" | head -n 1)"
  [ -n "$rate" ] || {
    echo "bench-ab: no events/s in the output of $bin" >&2
    exit 1
  }
  # The whole process's CPU per input record (Kafka mode): steadier than events/s, which
  # also moves with what else the machine (and the broker) is doing.
  total="$(sed -nE 's/^ *cpu +([0-9.]+) s of CPU.*/\1/p' <<<"$out" | head -n 1)"
  records="$(sed -nE 's/^ *input +([0-9]+) records.*/\1/p' <<<"$out" | head -n 1)"
  process=-
  if [ -n "$total" ] && [ -n "$records" ] && [ "$records" -gt 0 ]; then
    process="$(awk -v t="$total" -v n="$records" 'BEGIN { printf "%.1f", t * 1e6 / n }')"
  fi
  rates[$name]+="$rate "
  cpus[$name]+="${cpu:--} "
  procs[$name]+="$process "
  printf '%s run %d: %8s events/s  shards %s µs/event  process %s µs/event\n' "$name" "$i" "$rate" "${cpu:--}" "$process"
}

for i in $(seq 1 "$runs"); do
  one A "$a" "$@"
  one B "$b" "$@"
done

median() {
  tr ' ' '\n' | grep -v '^-\?$' | sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) { print "-" } else if (NR % 2) { print v[(NR + 1) / 2] } else { print (v[NR / 2] + v[NR / 2 + 1]) / 2 } }'
}
for name in A B; do
  printf '%s median: %s events/s, shards %s µs/event, process %s µs/event (%s)\n' "$name" \
    "$(median <<<"${rates[$name]}")" "$(median <<<"${cpus[$name]}")" "$(median <<<"${procs[$name]}")" \
    "$([ "$name" = A ] && echo "$a" || echo "$b")"
done
